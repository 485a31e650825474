# Two commands do everything on a fresh clone: `make demo` and `make test`.
# Everything is installed into the repository: .venv (the project), .venv-ministack (ministack pins its own
# botocore and runs Lambda functions on its own interpreter), node_modules (CDK CLI, DynamoDB Local's jar).

PYTHON ?= python3
VENV := .venv
MS_VENV := .venv-ministack
MINISTACK_VERSION := 1.5.33
# the boto3 that matches the botocore ministack pins
MINISTACK_BOTO3_VERSION := 1.43.106
PY := $(VENV)/bin/python
export CDK_DISABLE_CLI_TELEMETRY := true
export JSII_SILENCE_WARNING_END_OF_LIFE_NODE_VERSION := 20
export PIP_DISABLE_PIP_VERSION_CHECK := 1

.PHONY: install demo test lint unit bench soak model synth clean

install: $(VENV)/.installed $(MS_VENV)/.installed node_modules/.installed

$(VENV)/.installed: pyproject.toml functions/uploader/requirements.txt
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[dev]' -r functions/uploader/requirements.txt
	touch $@

$(MS_VENV)/.installed: Makefile
	test -x $(MS_VENV)/bin/python || $(PYTHON) -m venv $(MS_VENV)
	# ministack runs Lambda functions (CDK's own custom resources among them) on this interpreter: they need boto3.
	$(MS_VENV)/bin/python -m pip install --quiet 'ministack==$(MINISTACK_VERSION)' 'boto3==$(MINISTACK_BOTO3_VERSION)'
	touch $@

node_modules/.installed: package.json package-lock.json
	npm ci --no-audit --no-fund --loglevel=error
	touch $@

demo: install
	$(PY) -m kie_uploader.demo $(ARGS)

lint: install
	$(VENV)/bin/ruff check .
	$(VENV)/bin/mypy functions/uploader src infra bench tests

test: install lint
	$(VENV)/bin/pytest $(ARGS)

unit: install
	$(VENV)/bin/pytest tests/unit $(ARGS)

bench: install
	$(PY) -m bench.run $(ARGS)

soak: install
	SOAK_OBJECTS=1000 $(VENV)/bin/pytest tests/e2e/test_soak.py $(ARGS)

# The record's model-based test with many more generated histories than make test's 12.
model: install
	MODEL_EXAMPLES=$${MODEL_EXAMPLES:-300} $(VENV)/bin/pytest tests/integration/test_model.py $(ARGS)

synth: install
	node_modules/.bin/cdk synth --no-notices --quiet

clean:
	rm -rf cdk.out .local .pytest_cache .ruff_cache .mypy_cache
