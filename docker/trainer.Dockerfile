# syntax=docker/dockerfile:1
# MAFT trainer: the Celery worker (curate -> train agents with PEFT -> evaluate -> publish) and,
# with another command, Celery beat (auto-retrain, reaper). One image for both.
#   GPU (default):  docker build -f docker/trainer.Dockerfile -t maft-trainer .
#   CPU (laptop):   docker build -f docker/trainer.Dockerfile --build-arg DEVICE=cpu \
#                     -t maft-trainer:cpu .
#   beat:           docker run ... maft-trainer celery -A services.trainer.worker beat \
#                     -s /var/lib/maft/celerybeat-schedule
# CUDA: as the inference image, the CUDA 13.0 libraries come with torch==2.13.0's wheels.
ARG BASE_IMAGE=python:3.11-slim-bookworm

FROM ${BASE_IMAGE} AS build
ARG DEVICE=gpu
ARG TORCH_CPU_INDEX=https://download.pytorch.org/whl/cpu
ENV PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_NO_CACHE_DIR=1 \
    PATH=/opt/venv/bin:$PATH
RUN python -m venv /opt/venv
WORKDIR /src
COPY pyproject.toml README.md ./
COPY maft ./maft
COPY services ./services
# The steps of scripts/install.sh for the trainer's extra. On CPU, the same torch==2.13.0 as
# pyproject's pin, in its +cpu build (what install.sh installs from the local wheel store).
# DL3013: ".[trainer]" is this project; its versions are pinned in pyproject.toml.
# hadolint ignore=DL3013
RUN set -eux; \
    pip install "pip==26.3"; \
    case "$DEVICE" in \
      cpu) pip install --extra-index-url "$TORCH_CPU_INDEX" "torch==2.13.0+cpu" ".[trainer]" ;; \
      gpu) pip install ".[trainer]" ;; \
      *) echo "DEVICE must be cpu or gpu, not '$DEVICE'" >&2; exit 1 ;; \
    esac; \
    python -c "import torch, peft, celery, services.trainer.worker"

FROM ${BASE_IMAGE} AS runtime
# DL3008: Debian's package versions move with its security updates; the base image is the pin.
# hadolint ignore=DL3008
RUN apt-get update \
    && apt-get install -y --no-install-recommends tini \
    && rm -rf /var/lib/apt/lists/* \
    && groupadd --system --gid 10001 maft \
    && useradd --system --uid 10001 --gid 10001 --home-dir /home/maft --create-home \
       --shell /usr/sbin/nologin maft \
    && install -d -o 10001 -g 10001 /var/lib/maft /data /data/adapters /data/runs /models
COPY --from=build /opt/venv /opt/venv
# Same model path and adapter store as the inference image (adapters record the model path).
# MAFT_WORK_DIR holds curated datasets that every worker of a run reads: shared storage.
ENV PATH=/opt/venv/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    MAFT_HOME=/var/lib/maft \
    MAFT_MODEL_PATH=/models/base \
    MAFT_ADAPTER_STORE=/data/adapters \
    MAFT_WORK_DIR=/data/runs \
    HF_HUB_OFFLINE=1 \
    NVIDIA_DRIVER_CAPABILITIES=compute,utility
USER 10001:10001
WORKDIR /home/maft
# The worker answers a broadcast ping (handled by the main process, also while training).
# Beat has no such ping: its deployments disable or replace this check.
HEALTHCHECK --interval=60s --timeout=30s --start-period=60s --retries=3 \
    CMD ["sh", "-c", "exec celery -A services.trainer.worker inspect ping --destination \"celery@$HOSTNAME\" --timeout 10"]
ENTRYPOINT ["/usr/bin/tini", "--"]
CMD ["celery", "-A", "services.trainer.worker", "worker", "-Q", "training", "-c", "1", \
     "--loglevel", "INFO"]
