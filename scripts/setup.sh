#!/usr/bin/env bash
# One-shot, idempotent setup: Debian packages ffcv needs, then .venv/ installed from uv.lock only.
set -euo pipefail
cd "$(dirname "$0")/.."

[ "${1:-}" = "--uv-only" ] && APT_PKGS=() || \
APT_PKGS=(build-essential pkg-config libopencv-dev libturbojpeg0-dev git)
# --with-browser (make test): Chromium, for the slow test that renders the plots page and Data Docs offline.
[ "${1:-}" = "--with-browser" ] && APT_PKGS+=(chromium)
missing=()
for p in "${APT_PKGS[@]}"; do dpkg -s "$p" >/dev/null 2>&1 || missing+=("$p"); done
if [ ${#missing[@]} -gt 0 ]; then
  echo "[setup] installing Debian packages: ${missing[*]}"
  SUDO=""; [ "$(id -u)" -ne 0 ] && SUDO="sudo"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}"
fi

# Python is pinned (pyproject's requires-python, .python-version); uv never downloads one.
PY=${PYTHON:-python3.11}
command -v "$PY" >/dev/null || { echo "[setup] error: $PY not found; this project needs CPython 3.11" >&2; exit 1; }

# uv, pinned by version and hash, lives in .tools/uv: not in .venv, which `uv sync` keeps equal to the lock.
UV=.tools/uv/bin/uv
want_uv=$(sed -n 's/^uv==\([0-9.]*\).*/\1/p' scripts/uv-requirements.txt)
if ! "$UV" --version 2>/dev/null | grep -qx "uv $want_uv.*"; then
  echo "[setup] installing uv $want_uv into .tools/uv"
  rm -rf .tools/uv
  "$PY" -m venv .tools/uv
  .tools/uv/bin/pip install -q --disable-pip-version-check --require-hashes -r scripts/uv-requirements.txt
fi

[ "${1:-}" = "--uv-only" ] && exit 0  # `make lock` needs uv, not the environment

# Exactly what uv.lock lists (--locked: stop if pyproject.toml and uv.lock disagree; run `make lock`).
# A no-op in about a second when .venv already matches.
export UV_PYTHON_DOWNLOADS=never
"$UV" sync --locked --extra dev --python "$PY" --quiet

# Offline pages: Vega for `dvc plots show` and the Data Docs' styles and scripts, pinned and hash-checked from
# the npm registry into .tools/web (pipeline/webassets.py); DVC's plots template points there.
.venv/bin/python -m pipeline.webassets install || \
  echo "[setup] warning: offline page assets not installed (no npm registry?): dvc plots show and the Data Docs need a network"

# Analytics off (offline machines): DVC per-repo, GX and Prefect through the Makefile's environment.
.venv/bin/dvc config --local core.analytics false >/dev/null 2>&1 || true
echo "[setup] ok: $(.venv/bin/python -c 'import torch, torchvision; print("torch", torch.__version__, "torchvision", torchvision.__version__)')"
