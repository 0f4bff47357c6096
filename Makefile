# Two commands for a newcomer: `make serve` (install + start the service) and `make test`.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
# facenet-pytorch's wheel pins torch<2.3; its MTCNN runs on our torch, so it goes in without deps.
FACENET := facenet-pytorch==2.6.0

.PHONY: install install-all serve test docs lint image image-gpu

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)

# Serving, the Python API and the CLI: ONNX Runtime, no torch.
$(VENV)/.installed-base: pyproject.toml | $(BIN)/python
	$(BIN)/pip install -q -e .
	touch $@

# Everything the tests exercise: training (torch), PostgreSQL, the dlib teacher, test tools.
$(VENV)/.installed-test: pyproject.toml | $(BIN)/python
	$(BIN)/pip install -q -e '.[test]'
	$(BIN)/pip install -q --no-deps $(FACENET)
	touch $(VENV)/.installed-base $@

install: $(VENV)/.installed-base

install-all: $(VENV)/.installed-test

serve: install
	$(BIN)/stra-face serve

test: install-all
	$(BIN)/python -m pytest

# The documentation site into site/ (the API reference is generated from the app's OpenAPI document).
docs: install-all
	NO_MKDOCS_2_WARNING=1 $(BIN)/mkdocs build --strict

# ruff check (rules in pyproject.toml) and the formatting `ruff format` gives, both at 120 columns.
lint: install-all
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

# Container images; docker/compose*.yml run them (see the README's Docker section).
image:
	docker build -f docker/Dockerfile -t stra-face:cpu .

image-gpu:
	docker build -f docker/Dockerfile.gpu -t stra-face:gpu .
