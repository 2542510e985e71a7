"""Offline pages: pinned npm packages are verified and extracted, the plots template inlines Vega, and a Data
Docs build is rewritten to local copies of its CDN files."""
from __future__ import annotations

import base64
import hashlib
import io
import tarfile
from pathlib import Path

import pytest

from pipeline import webassets as wa


def _tarball(files: dict[str, bytes]) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tar:
        for name, data in files.items():
            info = tarfile.TarInfo(f"package/{name}")
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return buf.getvalue()


def _integrity(data: bytes) -> str:
    return "sha512-" + base64.b64encode(hashlib.sha512(data).digest()).decode()


def test_a_tarball_that_differs_from_its_pin_is_refused_naming_it():
    data = _tarball({"a.js": b"x"})
    package = wa.Package("demo", "1.0.0", _integrity(data + b"!"), ("a.js",))
    with pytest.raises(wa.WebAssetError, match="demo-1.0.0.tgz: sha512 .* does not match the pinned integrity"):
        wa._check_integrity(package, data)
    wa._check_integrity(wa.Package("demo", "1.0.0", _integrity(data), ("a.js",)), data)


def test_only_the_listed_files_and_folders_are_extracted(tmp_path):
    data = _tarball({"build/a.min.js": b"A", "webfonts/f.woff2": b"F", "src/big.js": b"no"})
    package = wa.Package("@scope/demo", "2.0.0", _integrity(data), ("build/a.min.js", "webfonts/"))
    wa._extract(package, data, tmp_path)
    files = sorted(p.relative_to(tmp_path).as_posix() for p in tmp_path.rglob("*") if p.is_file())
    assert files == ["demo-2.0.0/build/a.min.js", "demo-2.0.0/webfonts/f.woff2"]
    with pytest.raises(wa.WebAssetError, match="no build/missing.js in the package"):
        wa._extract(wa.Package("demo", "3", _integrity(data), ("build/missing.js",)), data, tmp_path)


@pytest.fixture
def web(tmp_path) -> Path:
    """A fake installed asset folder: every pinned file, with recognisable content."""
    root = tmp_path / "web"
    for p in wa.PACKAGES:
        for f in p.files:
            path = root / p.folder / (f + "x.woff2" if f.endswith("/") else f)
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(f"/* {p.name} {f} */")
    return root


def test_the_plots_template_inlines_vega_and_keeps_dvcs_placeholder(web):
    page = wa.plots_template(web)
    assert "{plot_divs}" in page and "{scripts}" not in page and "cdn.jsdelivr" not in page
    for name in ("vega build/vega.min.js", "vega-lite build/vega-lite.min.js", "vega-embed build/vega-embed.min.js"):
        assert f"/* {name} */" in page


def test_data_docs_are_rewritten_to_local_copies_at_every_depth(web, tmp_path):
    docs = tmp_path / "data_docs"
    head = ('<link href="https://maxcdn.bootstrapcdn.com/bootstrap/4.3.1/css/bootstrap.min.css">'
            '<script src="https://code.jquery.com/jquery-3.7.1.min.js"></script>'
            '<link href="https://cdnjs.cloudflare.com/ajax/libs/font-awesome/6.6.0/css/all.min.css">'
            '<link href="https://unpkg.com/bootstrap-table@1.19.0/dist/extensions/filter-control/'
            'bootstrap-table-filter-control.css">'
            '<img src="https://great-expectations-web-assets.s3.us-east-2.amazonaws.com/logo-long.png?d=1">'
            '<a href="https://greatexpectations.io">GX</a>')
    (docs / "validations/x").mkdir(parents=True)
    (docs / "index.html").write_text(head)
    (docs / "validations/x/page.html").write_text(head)
    assert wa.offline_data_docs(docs, web) == 10
    top, deep = (docs / "index.html").read_text(), (docs / "validations/x/page.html").read_text()
    assert 'href="static/offline/bootstrap-4.3.1/dist/css/bootstrap.min.css"' in top
    assert 'src="../../static/offline/jquery-3.7.1/dist/jquery.min.js"' in deep
    assert "static/offline/bootstrap-table-1.19.1/dist/extensions/filter-control/bootstrap-table-filter-control.css" in top
    assert 'src="static/images/logo-long.png"' in top
    assert 'href="https://greatexpectations.io"' in top, "plain links stay links"
    assert (docs / "static/offline/jquery-3.7.1/dist/jquery.min.js").read_text() == "/* jquery dist/jquery.min.js */"
    assert (docs / "static/offline/fontawesome-free-6.6.0/webfonts").is_dir(), "the icon fonts the CSS loads"


def test_without_installed_assets_data_docs_are_left_as_they_are(tmp_path):
    (tmp_path / "docs").mkdir()
    page = tmp_path / "docs/index.html"
    page.write_text('<script src="https://code.jquery.com/jquery-3.7.1.min.js"></script>')
    assert wa.offline_data_docs(tmp_path / "docs", tmp_path / "nothing") == 0
    assert "code.jquery.com" in page.read_text()
