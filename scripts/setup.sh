#!/usr/bin/env bash
# One-shot, idempotent setup: Debian packages ffcv needs, then .venv/ with the project (editable, dev extras).
set -euo pipefail
cd "$(dirname "$0")/.."

APT_PKGS=(build-essential pkg-config libopencv-dev libturbojpeg0-dev git)
missing=()
for p in "${APT_PKGS[@]}"; do dpkg -s "$p" >/dev/null 2>&1 || missing+=("$p"); done
if [ ${#missing[@]} -gt 0 ]; then
  echo "[setup] installing Debian packages: ${missing[*]}"
  SUDO=""; [ "$(id -u)" -ne 0 ] && SUDO="sudo"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}"
fi

PY=${PYTHON:-python3.11}
command -v "$PY" >/dev/null || PY=python3
[ -x .venv/bin/python ] || "$PY" -m venv .venv

# Reinstall only when pyproject.toml changed since the last successful install.
stamp=.venv/.pipeline-installed
want=$(sha256sum pyproject.toml | cut -d' ' -f1)
if [ ! -f "$stamp" ] || [ "$(cat "$stamp")" != "$want" ]; then
  echo "[setup] installing the project into .venv (first time: several minutes)"
  .venv/bin/pip install -q --upgrade pip setuptools wheel
  # ffcv's setup.py imports numpy/pkgconfig at build time: give its build env what it needs.
  .venv/bin/pip install -q numpy pkgconfig
  .venv/bin/pip install -q -e '.[dev]'
  echo "$want" > "$stamp"
fi

# Analytics off (offline machines): DVC per-repo, GX and Prefect through env (see scripts/env.sh).
.venv/bin/dvc config --local core.analytics false >/dev/null 2>&1 || true
echo "[setup] ok: $(.venv/bin/python -c 'import torch, torchvision; print("torch", torch.__version__, "torchvision", torchvision.__version__)')"
