# Two commands on a fresh machine: `make up` (the product) and `make test` (the tests).
.PHONY: install up test lint bench deploy-check

.venv/.installed: pyproject.toml scripts/install.sh
	bash scripts/install.sh

install: .venv/.installed

up: .venv/.installed
	.venv/bin/maft up

test: .venv/.installed
	.venv/bin/python -m pytest -q

lint: .venv/.installed
	.venv/bin/ruff check maft services experiment tests bench
	.venv/bin/mypy

bench: .venv/.installed
	.venv/bin/python bench/debate_latency.py

# The deployment files (compose, k8s overlays, Dockerfiles); also part of `make test`.
deploy-check: .venv/.installed
	.venv/bin/python -m pytest -q tests/deploy
