"""GX Data Docs for a manifest validation run, readable offline."""

from __future__ import annotations

import html
import pathlib
from urllib.parse import urlparse
from urllib.request import url2pathname

SITE = "manifests"
_MARKER = "<!-- pipeline: static index -->"


def site_config(docs_dir: pathlib.Path) -> dict:
    """Data Docs site config writing plain HTML files under `docs_dir` (absolute path)."""
    return {
        SITE: {
            "class_name": "SiteBuilder",
            "show_how_to_buttons": False,
            "store_backend": {
                "class_name": "TupleFilesystemStoreBackend",
                "base_directory": str(pathlib.Path(docs_dir).resolve()),
            },
            "site_index_builder": {"class_name": "DefaultSiteIndexBuilder"},
        }
    }


def build(context, docs_dir: pathlib.Path, summary: dict) -> pathlib.Path:
    """Build the context's Data Docs site into `docs_dir` and return its index.html.

    The validation pages GX renders are static HTML, but GX's index lists them through a
    bootstrap-table script loaded from a CDN, so offline that list is empty. We therefore add a
    plain list of links (with the run's per-table status) at the top of the index.
    """
    docs_dir = pathlib.Path(docs_dir).resolve()
    context.build_data_docs(site_names=[SITE])
    index = docs_dir / "index.html"
    links = _validation_pages(context, docs_dir)
    page = index.read_text(encoding="utf-8")
    if _MARKER not in page:  # GX rewrites index.html on each build; stay idempotent anyway
        static = _static_index(links, summary)
        page = (page.replace("<body>", "<body>\n" + static, 1) if "<body>" in page
                else static + page)
        index.write_text(page, encoding="utf-8")
    return index


def _validation_pages(context, docs_dir: pathlib.Path) -> dict[str, str]:
    """Suite (= table) name -> validation page path relative to `docs_dir`.

    The context is in-memory and fresh per run, so its store holds exactly this run's results;
    stale pages from earlier runs in the same folder are not linked.
    """
    pages = {}
    for key in context.validation_results_store.list_keys():
        for url in context.get_docs_sites_urls(resource_identifier=key, site_name=SITE):
            path = pathlib.Path(url2pathname(urlparse(url["site_url"]).path))
            pages[key.expectation_suite_identifier.name] = path.relative_to(docs_dir).as_posix()
    return pages


def _static_index(links: dict[str, str], summary: dict) -> str:
    """HTML list: one line per table with its status and a link to its validation page."""
    items = []
    for table, stats in summary["tables"].items():
        status = "passed" if stats["expectations_failed"] == 0 else "FAILED"
        label = (f"{html.escape(table)}: {status} - {stats['rows']} rows, "
                 f"{stats['expectations_failed']}/{stats['expectations_evaluated']}"
                 f" expectations failed, {stats['offending_rows']} offending rows")
        href = links.get(table)
        items.append(f'<li><a href="{html.escape(href)}">{label}</a></li>' if href
                     else f"<li>{label}</li>")
    overall = "passed" if summary["success"] else "FAILED"
    return (f'{_MARKER}\n<div class="container-fluid pt-3 pl-5">'
            f"<h3>Manifest validation: {overall}</h3><ul>{''.join(items)}</ul></div>\n")
