# syntax=docker/dockerfile:1
# MAFT gateway: FastAPI API + debate orchestration + Celery producer. No torch, no vLLM.
#   docker build -f docker/gateway.Dockerfile -t maft-gateway .      (context: the repo root)
# The same image runs the one-shot migration job (`maft db upgrade`) and `maft keys create`.
ARG BASE_IMAGE=python:3.11-slim-bookworm

FROM ${BASE_IMAGE} AS build
ENV PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_NO_CACHE_DIR=1 \
    PATH=/opt/venv/bin:$PATH
RUN python -m venv /opt/venv
WORKDIR /src
COPY pyproject.toml README.md ./
COPY maft ./maft
COPY services ./services
# As scripts/install.sh, restricted to the gateway's extra (non-editable: the source stays here).
# DL3013: ".[gateway]" is this project; its versions are pinned in pyproject.toml.
# hadolint ignore=DL3013
RUN pip install "pip==26.3" \
    && pip install ".[gateway]" \
    && python -c "import fastapi, celery, services.gateway.main"

FROM ${BASE_IMAGE} AS runtime
# DL3008: Debian's package versions move with its security updates; the base image is the pin.
# hadolint ignore=DL3008
RUN apt-get update \
    && apt-get install -y --no-install-recommends tini \
    && rm -rf /var/lib/apt/lists/* \
    && groupadd --system --gid 10001 maft \
    && useradd --system --uid 10001 --gid 10001 --home-dir /home/maft --create-home \
       --shell /usr/sbin/nologin maft \
    && install -d -o 10001 -g 10001 /var/lib/maft
COPY --from=build /opt/venv /opt/venv
ENV PATH=/opt/venv/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    MAFT_HOME=/var/lib/maft
USER 10001:10001
WORKDIR /home/maft
EXPOSE 8000
# Liveness only (the process answers); /readyz (database, inference, society) is for orchestrators.
HEALTHCHECK --interval=30s --timeout=5s --start-period=20s --retries=3 \
    CMD ["python", "-c", "import urllib.request as u; u.urlopen('http://127.0.0.1:8000/healthz', timeout=4)"]
ENTRYPOINT ["/usr/bin/tini", "--"]
CMD ["uvicorn", "--factory", "services.gateway.main:app_factory", "--host", "0.0.0.0", "--port", "8000"]
