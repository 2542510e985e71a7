"""Pages that render offline: the JavaScript and CSS that `dvc plots show` and Great Expectations' Data Docs
load from CDNs, installed from the npm registry by the setup and used from local files.

    python -m pipeline.webassets install     # scripts/setup.sh runs it: download, verify, extract, configure

`install` fetches each pinned package tarball once (cached in .tools/web/cache/), checks it against the
registry's sha512 integrity, extracts only the files used into .tools/web/<package>/, writes a `dvc plots show`
template with the Vega scripts inlined (a self-contained page wherever DVC writes it) and points DVC at it
(`.dvc/config.local`: plots.html_template). `offline_data_docs()` rewrites a Data Docs build to local copies
(the validate stage calls it). docs/troubleshooting.md, "Pages that render offline".
"""
from __future__ import annotations

import base64
import os
import hashlib
import io
import logging
import re
import shutil
import subprocess
import sys
import tarfile
import urllib.request
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
ENV_WEB = "PIPELINE_WEB_ASSETS"  # another installed copy (the tests' project copies use the checkout's)


def web_dir() -> Path:
    return Path(os.environ.get(ENV_WEB) or REPO / ".tools" / "web")


TEMPLATE = "dvc_plots_template.html"
REGISTRY = "https://registry.npmjs.org"
log = logging.getLogger("pipeline")


@dataclass(frozen=True)
class Package:
    name: str  # npm name, scope included
    version: str
    integrity: str  # the registry's dist.integrity (sha512, base64)
    files: tuple[str, ...]  # paths inside the tarball's package/ folder; a trailing '/' takes the whole folder

    @property
    def folder(self) -> str:
        return f"{self.name.split('/')[-1]}-{self.version}"

    @property
    def tarball_url(self) -> str:
        return f"{REGISTRY}/{self.name}/-/{self.name.split('/')[-1]}-{self.version}.tgz"


PACKAGES = (
    # dvc_render's own CDN versions, so that DVC's Vega-Lite specs render as they would online.
    Package("vega", "5.20.2", "sha512-qmH7aD9GGPpssVdxL1xgcdxTbQzyRUeRR16Os385ymvQhiwCYQNA6+eXUPAZDTVLfk0RXu6Jzj6kUE5jQ80EVw==",
            ("build/vega.min.js",)),
    Package("vega-lite", "5.2.0", "sha512-Yxcg8MvYfxHcG6BbkaKT0oVCIMIcE19UvqIsEwBmyd/7h2nzW7oRnID81T8UrY7hpDrIr6wa2JADOT2dhGNErw==",
            ("build/vega-lite.min.js",)),
    Package("vega-embed", "6.18.2", "sha512-wcDyQPE4J5aiCDc3/suH5RQDvrKkjuLkhzUcbOLwEkNF8/+pp17tS0JghzEvAPNRg+5aG1/N2ydixq8Lk3dOlg==",
            ("build/vega-embed.min.js",)),
    # What Great Expectations 1.x's Data Docs pages link from CDNs.
    Package("bootstrap", "4.3.1", "sha512-rXqOmH1VilAt2DyPzluTi2blhk17bO7ef+zLLPlWvG494pDxcM234pJ8wTc/6R40UWizAIIMgxjvxZg5kmsbag==",
            ("dist/css/bootstrap.min.css", "dist/js/bootstrap.min.js")),
    Package("@forevolve/bootstrap-dark", "1.1.0",
            "sha512-A3ucpEpxPoTVO490lZZCfjPXxv832l7mm1IxX3bXyxvgwnPGXDLyh7dWrphXKO8YBAu3EswbBEu3VSW8NRMW3A==",
            ("dist/css/bootstrap-prefers-dark.css",)),
    Package("bootstrap-datepicker", "1.9.0",
            "sha512-9rYYbaVOheGYxjOr/+bJCmRPihfy+LkLSg4fIFMT9Od8WwWB/MB50w0JO1eBgKUMbb7PFHQD5uAfI3ArAxZRXA==",
            ("dist/css/bootstrap-datepicker.min.css", "dist/js/bootstrap-datepicker.min.js")),
    Package("@fortawesome/fontawesome-free", "6.6.0",
            "sha512-60G28ke/sXdtS9KZCpZSHHkCbdsOGEhIUGlwq6yhY74UpTiToIh8np7A8yphhM4BWsvNFtIvLpi4co+h9Mr9Ow==",
            ("css/all.min.css", "webfonts/")),
    Package("bootstrap-table", "1.19.1", "sha512-WvV+l1AI/C+zThaKmfHmi/IuayVNB0qdFyEhFx1jyZhO0oLtNJNANkCR3rvJf6Dkh72dsLElxpE/bzK9seEQLA==",
            ("dist/bootstrap-table.min.css", "dist/bootstrap-table.min.js",
             "dist/extensions/filter-control/bootstrap-table-filter-control.css",
             "dist/extensions/filter-control/bootstrap-table-filter-control.min.css",
             "dist/extensions/filter-control/bootstrap-table-filter-control.min.js")),
    Package("popper.js", "1.12.9", "sha512-s0EEi9xiSCdqz9lV4IiVH5yIZnDX/U1t0tCjB+0jXx9jW8lrR7kOpVupiUg175ogqVoudpDXHF1p6dKATCHMeg==",
            ("dist/umd/popper.min.js",)),
    Package("jquery", "3.7.1", "sha512-m4avr8yL8kmFN8psrbFFFmB/If14iN5o9nw/NgnnM+kybDJpRsAynV2BsfpTYrTRysYUdADVD7CkUUizgkpLfg==",
            ("dist/jquery.min.js",)),
)
_BY_NAME = {p.name: p for p in PACKAGES}

# CDN address (regex, matched whole) -> (package, file): what each remote link of a Data Docs page becomes.
CDN = (
    (r"https://cdn\.jsdelivr\.net/npm/vega@5[^\"']*", "vega", "build/vega.min.js"),
    (r"https://cdn\.jsdelivr\.net/npm/vega-lite@5[^\"']*", "vega-lite", "build/vega-lite.min.js"),
    (r"https://cdn\.jsdelivr\.net/npm/vega-embed@6[^\"']*", "vega-embed", "build/vega-embed.min.js"),
    (r"https://maxcdn\.bootstrapcdn\.com/bootstrap/4\.3\.1/css/bootstrap\.min\.css", "bootstrap",
     "dist/css/bootstrap.min.css"),
    (r"https://stackpath\.bootstrapcdn\.com/bootstrap/4\.3\.1/js/bootstrap\.min\.js", "bootstrap",
     "dist/js/bootstrap.min.js"),
    (r"https://cdn\.jsdelivr\.net/npm/@forevolve/bootstrap-dark@1\.1\.0/dist/css/bootstrap-prefers-dark\.css",
     "@forevolve/bootstrap-dark", "dist/css/bootstrap-prefers-dark.css"),
    (r"https://cdnjs\.cloudflare\.com/ajax/libs/bootstrap-datepicker/1\.9\.0/css/bootstrap-datepicker\.min\.css",
     "bootstrap-datepicker", "dist/css/bootstrap-datepicker.min.css"),
    (r"https://cdnjs\.cloudflare\.com/ajax/libs/bootstrap-datepicker/1\.9\.0/js/bootstrap-datepicker\.min\.js",
     "bootstrap-datepicker", "dist/js/bootstrap-datepicker.min.js"),
    (r"https://cdnjs\.cloudflare\.com/ajax/libs/font-awesome/6\.6\.0/css/all\.min\.css",
     "@fortawesome/fontawesome-free", "css/all.min.css"),
    # GX links 1.19.0 of the filter-control extension next to 1.19.1 of the table; 1.19.1's is used for both.
    (r"https://unpkg\.com/bootstrap-table@1\.19\.[01]/dist/(bootstrap-table\.min\.(?:css|js)"
     r"|extensions/filter-control/bootstrap-table-filter-control(?:\.min)?\.(?:css|js))", "bootstrap-table", r"dist/\1"),
    (r"https://cdnjs\.cloudflare\.com/ajax/libs/popper\.js/1\.12\.9/umd/popper\.min\.js", "popper.js",
     "dist/umd/popper.min.js"),
    (r"https://code\.jquery\.com/jquery-3\.7\.1\.min\.js", "jquery", "dist/jquery.min.js"),
)
GX_LOGO = r"https://great-expectations-web-assets\.s3\.[a-z0-9-]+\.amazonaws\.com/logo-long\.png[^\"']*"


class WebAssetError(RuntimeError):
    """A package could not be fetched or did not match its pinned integrity; the message names it."""


def _check_integrity(package: Package, data: bytes) -> None:
    algo, _, expected = package.integrity.partition("-")
    got = base64.b64encode(hashlib.new(algo, data).digest()).decode()
    if got != expected:
        raise WebAssetError(f"{package.tarball_url}: {algo} {got[:16]}... does not match the pinned "
                            f"integrity {expected[:16]}... (a changed or corrupted download; nothing installed)")


def _fetch(package: Package, cache: Path) -> bytes:
    cached = cache / f"{package.folder}.tgz"
    if cached.is_file():
        data = cached.read_bytes()
        try:
            _check_integrity(package, data)
            return data
        except WebAssetError:
            cached.unlink()  # a truncated earlier download: fetch it again
    try:
        with urllib.request.urlopen(package.tarball_url, timeout=120) as response:
            data = response.read()
    except OSError as e:
        raise WebAssetError(f"{package.tarball_url}: {e}") from None
    _check_integrity(package, data)
    cache.mkdir(parents=True, exist_ok=True)
    tmp = cached.with_suffix(".tmp")
    tmp.write_bytes(data)
    tmp.replace(cached)
    return data


def _extract(package: Package, data: bytes, web: Path) -> None:
    target = web / package.folder
    partial = web / f"{package.folder}.partial"
    shutil.rmtree(partial, ignore_errors=True)
    with tarfile.open(fileobj=io.BytesIO(data), mode="r:gz") as tar:
        for member in tar.getmembers():
            rel = member.name.removeprefix("package/")
            wanted = any(rel == f or (f.endswith("/") and rel.startswith(f)) for f in package.files)
            if not wanted or not member.isfile() or ".." in Path(rel).parts:
                continue
            out = partial / rel
            out.parent.mkdir(parents=True, exist_ok=True)
            out.write_bytes(tar.extractfile(member).read())
    missing = [f for f in package.files if not (partial / f).exists()]
    if missing:
        raise WebAssetError(f"{package.tarball_url}: no {', '.join(missing)} in the package")
    shutil.rmtree(target, ignore_errors=True)
    partial.rename(target)


def local_file(name: str, file: str, web: Path | None = None) -> Path:
    return (web or web_dir()) / _BY_NAME[name].folder / file


def installed(web: Path | None = None) -> bool:
    web = web or web_dir()
    return all(local_file(p.name, f, web).exists() for p in PACKAGES for f in p.files)


def plots_template(web: Path | None = None) -> str:
    """A `dvc plots show` page with vega, vega-lite and vega-embed inlined: it renders without a network and
    wherever DVC writes it. `{plot_divs}` is DVC's placeholder; `{scripts}` (DVC's CDN links) is left out."""
    scripts = "\n".join(f"<script>\n{local_file(name, file, web).read_text(encoding='utf-8')}\n</script>"
                        for name, file in (("vega", "build/vega.min.js"), ("vega-lite", "build/vega-lite.min.js"),
                                           ("vega-embed", "build/vega-embed.min.js")))
    return ("<!DOCTYPE html>\n<html>\n<head>\n<meta charset=\"utf-8\">\n{refresh_tag}\n<title>DVC plots</title>\n"
            f"{scripts}\n<style>table {{ border-spacing: 15px; }} body {{ font-family: sans-serif; }}</style>\n"
            "</head>\n<body>\n{plot_divs}\n</body>\n</html>\n")


def install(web: Path | None = None, configure_dvc: bool = True, echo=print) -> Path:
    """Fetch, verify and extract every package, write the plots template, point DVC at it; returns the template."""
    web = web or web_dir()
    for package in PACKAGES:
        if all((web / package.folder / f).exists() for f in package.files):
            continue
        _extract(package, _fetch(package, web / "cache"), web)
        echo(f"[webassets] {package.name}@{package.version} -> {web / package.folder}")
    template = web / TEMPLATE
    tmp = template.with_suffix(".tmp")
    tmp.write_text(plots_template(web), encoding="utf-8")
    tmp.replace(template)
    if configure_dvc:
        subprocess.run([str(Path(sys.executable).parent / "dvc"), "config", "--local", "plots.html_template",
                        str(template)], cwd=REPO, check=True, capture_output=True)
    return template


def offline_data_docs(docs: Path, web: Path | None = None) -> int:
    """Rewrite every page of a Data Docs build to local copies of its CDN files (copied into
    <docs>/static/offline/); returns the links rewritten. Without installed assets, nothing changes (0)."""
    web = web or web_dir()
    if not installed(web):
        log.warning("Data Docs keep their CDN links: the offline copies are not installed "
                    "(python -m pipeline.webassets install)")
        return 0
    docs = Path(docs)
    offline = docs / "static" / "offline"
    used: set[tuple[str, str]] = set()
    count = 0
    for page in sorted(docs.rglob("*.html")):
        text = page.read_text(encoding="utf-8")
        depth = len(page.relative_to(docs).parts) - 1
        up = "../" * depth

        def local(match: re.Match, name: str, file: str) -> str:
            target = match.expand(file)
            used.add((name, target))
            return f"{up}static/offline/{_BY_NAME[name].folder}/{target}"

        new = text
        for pattern, name, file in CDN:
            new, n = re.subn(pattern, lambda m, name=name, file=file: local(m, name, file), new)
            count += n
        new, n = re.subn(GX_LOGO, f"{up}static/images/logo-long.png", new)
        count += n
        if new != text:
            page.write_text(new, encoding="utf-8")
    for name, file in sorted(used):
        source = local_file(name, file, web)
        dest = offline / _BY_NAME[name].folder / file
        dest.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(source, dest)
        if name == "@fortawesome/fontawesome-free":  # its CSS loads ../webfonts/*
            shutil.copytree(web / _BY_NAME[name].folder / "webfonts", dest.parent.parent / "webfonts",
                            dirs_exist_ok=True)
    return count


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if args != ["install"]:
        print("usage: python -m pipeline.webassets install", file=sys.stderr)
        return 2
    try:
        template = install()
    except WebAssetError as e:
        print(f"[webassets] error: {e}", file=sys.stderr)
        return 1
    print(f"[webassets] ok: offline Vega and Data Docs assets in {web_dir()}; dvc plots show uses {template}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
