"""`python -m pipeline.doctor`: each check says ok, warn or FAIL with what to do; FAIL sets the exit status."""
from __future__ import annotations

import http.server
import subprocess
import sys
import threading
from pathlib import Path

from pipeline import doctor

REPO = Path(__file__).resolve().parent.parent


def test_the_projects_own_environment_passes():
    proc = subprocess.run([sys.executable, "-m", "pipeline.doctor"], cwd=REPO, capture_output=True, text=True,
                          env={"PATH": "/usr/bin:/bin", "HOME": str(Path.home())})
    lines = proc.stdout.splitlines()
    assert len(lines) == 9 and all(line[:4] in ("ok  ", "warn", "FAIL") for line in lines[:-1])
    assert any(line.startswith("ok   offline pages: Vega and Data Docs assets in") for line in lines)
    assert any(line.startswith("ok   params.yaml: valid") for line in lines)
    assert any(line.startswith("warn Prefect: PREFECT_API_URL is not set") for line in lines)
    assert proc.returncode == (1 if any(line.startswith("FAIL") for line in lines) else 0), proc.stdout


def test_wrong_environment_and_missing_venv_are_named(tmp_path):
    c = doctor.check_venv(prefix="/usr", repo=tmp_path)
    assert c.status == "FAIL" and ".venv does not exist: run `make setup`" in c.detail
    (tmp_path / ".venv").mkdir()
    c = doctor.check_venv(prefix="/usr", repo=tmp_path)
    assert c.status == "FAIL" and "source .venv/bin/activate" in c.detail
    assert doctor.check_venv(prefix=str(tmp_path / ".venv"), repo=tmp_path).status == "ok"


def test_missing_package_and_debian_package_fail_with_the_fix():
    c = doctor.check_packages(("json", "no_such_package_xyz"))
    assert c.status == "FAIL" and "no_such_package_xyz" in c.detail and "make setup" in c.detail
    assert doctor.apt_packages() == ["build-essential", "pkg-config", "libopencv-dev", "libturbojpeg0-dev", "git"]
    c = doctor.check_debian(["no-such-debian-package-xyz"])
    assert c.status in ("FAIL", "warn") and "no-such-debian-package-xyz" in c.detail


def test_dvc_without_hydra_and_bad_params_fail(tmp_path):
    (tmp_path / ".dvc").mkdir()
    (tmp_path / ".dvc/config").write_text("[core]\n    analytics = false\n")
    c = doctor.check_dvc_hydra(tmp_path)
    assert c.status == "FAIL" and "dvc config hydra.enabled true" in c.detail
    (tmp_path / ".dvc/config").write_text("[hydra]\n    enabled = true\n")
    assert doctor.check_dvc_hydra(tmp_path).status == "ok"
    (tmp_path / "params.yaml").write_text((REPO / "params.yaml").read_text().replace("  k: 2\n", "  k: 0\n"))
    c = doctor.check_params(tmp_path)
    assert c.status == "FAIL" and "loss.k = 0" in c.detail


def test_prefect_server_answering_or_not():
    class Health(http.server.BaseHTTPRequestHandler):
        def do_GET(self):  # noqa: N802 - the stdlib's name
            self.send_response(200 if self.path == "/api/health" else 404)
            self.end_headers()
            self.wfile.write(b"true")

        def log_message(self, *args):
            pass

    server = http.server.HTTPServer(("127.0.0.1", 0), Health)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    url = f"http://127.0.0.1:{server.server_port}/api"
    try:
        assert doctor.check_prefect(url).status == "ok"
    finally:
        server.shutdown()
    c = doctor.check_prefect(url, timeout=1.0)
    assert c.status == "FAIL" and "does not answer" in c.detail and "make server" in c.detail


def test_low_disk_is_a_warning(tmp_path):
    assert doctor.check_disk(tmp_path, min_free_gib=0.0).status == "ok"
    c = doctor.check_disk(tmp_path, min_free_gib=1e9)
    assert c.status == "warn" and "dvc gc" in c.detail
