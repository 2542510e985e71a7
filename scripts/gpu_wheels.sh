#!/usr/bin/env bash
# Downloads into .gpu-wheels/ (git-ignored) the wheels of scripts/gpu-requirements.txt for the GPU machine's
# interpreter (GPU_PYTHON_VERSION, default 3.12: the version its image had in 2026-11), x86-64 Linux.
set -euo pipefail
cd "$(dirname "$0")/.."
uv=.tools/uv/bin/uv
[ -x "$uv" ] || bash scripts/setup.sh
"$uv" tool run --from pip pip download --quiet --only-binary=:all: --implementation cp \
  --python-version "${GPU_PYTHON_VERSION:-3.12}" --platform manylinux2014_x86_64 --no-deps \
  -d .gpu-wheels -r scripts/gpu-requirements.txt
ls .gpu-wheels
