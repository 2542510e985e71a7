"""The pages a user opens render without a network: `dvc plots show` draws its Vega charts from the copies the
setup installs, and the Data Docs load their styles and scripts locally. Checked in headless Chromium (Debian's,
installed by `make test`) with every remote request sent to a dead proxy.

Slow: a project copy's `dvc plots show` and two page loads, about half a minute."""
from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest
from PIL import Image
from small_project import REPO, copy_project, sh

from pipeline import webassets

pytestmark = pytest.mark.slow
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
NO_NETWORK = ["--proxy-server=127.0.0.1:9", "--proxy-bypass-list=<-loopback>"]  # port 9: discard, nothing answers


def _chromium(*args: str) -> subprocess.CompletedProcess:
    assert CHROMIUM, "Chromium is not installed: `make test` installs it (scripts/setup.sh --with-browser)"
    return subprocess.run([CHROMIUM, "--headless=new", "--no-sandbox", "--disable-gpu", *NO_NETWORK,
                           "--virtual-time-budget=10000", *args], capture_output=True, text=True, timeout=120)


@pytest.fixture(scope="module")
def project(built_small_project, tmp_path_factory) -> Path:
    return copy_project(built_small_project, tmp_path_factory.mktemp("offline") / "project")


def test_the_plots_page_draws_every_vega_chart_without_a_network(project, tmp_path):
    template = REPO / ".tools/web" / webassets.TEMPLATE
    assert template.is_file(), "the setup writes the template (python -m pipeline.webassets install)"
    sh(project, "dvc", "config", "--local", "plots.html_template", str(template))
    sh(project, "dvc", "plots", "show", "--out", str(tmp_path / "plots"))
    page = (tmp_path / "plots/index.html").read_text()
    assert "cdn.jsdelivr.net" not in page
    charts = page.count("vegaEmbed(")
    dom = _chromium("--dump-dom", (tmp_path / "plots/index.html").as_uri()).stdout
    drawn = len(re.findall(r'<canvas[^>]*class="marks"', dom))
    assert charts >= 5 and drawn == charts, f"{drawn} of {charts} Vega charts drawn"


def _green_pixels(png: Path) -> int:
    """Pixels of Bootstrap's success green (the status icons): there only when the CSS and icon font load."""
    image = Image.open(png).convert("RGB")
    return sum(1 for r, g, b in image.getdata() if g > 140 and r < 90 and b < 110 and g - r > 80)


def test_the_data_docs_are_styled_without_a_network(project, tmp_path):
    docs = project / "data/reports/validate/data_docs"
    pages = list(docs.rglob("*.html"))
    remote = [m for p in pages for m in re.findall(r'(?:src|href)="(https?://[^"]+\.(?:css|js))"', p.read_text())]
    assert pages and not remote, remote
    _chromium("--window-size=1200,900", f"--screenshot={tmp_path / 'docs.png'}", (docs / "index.html").as_uri())
    # The same page with its original CDN links, which cannot load here: the contrast the check relies on.
    unstyled = tmp_path / "unstyled.html"
    unstyled.write_text((docs / "index.html").read_text().replace("static/offline/", "https://cdn.invalid/"))
    shutil.copytree(docs / "static", tmp_path / "static")
    _chromium("--window-size=1200,900", f"--screenshot={tmp_path / 'unstyled.png'}", unstyled.as_uri())
    assert _green_pixels(tmp_path / "docs.png") > 200 > _green_pixels(tmp_path / "unstyled.png")
