# Two commands for a newcomer: `make serve` (install + start the service) and `make test`.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
# facenet-pytorch's wheel pins torch<2.3; its MTCNN runs on our torch, so it goes in without deps.
FACENET := facenet-pytorch==2.6.0

.PHONY: install serve test image image-gpu

$(BIN)/stra-face: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q -e '.[test]'
	$(BIN)/pip install -q --no-deps $(FACENET)
	touch $@

install: $(BIN)/stra-face

serve: install
	$(BIN)/stra-face serve

test: install
	$(BIN)/python -m pytest

# Container images; docker/compose*.yml run them (see the README's Docker section).
image:
	docker build -f docker/Dockerfile -t stra-face:cpu .

image-gpu:
	docker build -f docker/Dockerfile.gpu -t stra-face:gpu .
