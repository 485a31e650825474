# Two commands do everything on a fresh clone: `make demo` and `make test`.
# Everything is installed into the repository: .venv (the project), .venv-ministack (ministack pins its own
# botocore and runs Lambda functions on its own interpreter), node_modules (CDK CLI, DynamoDB Local's jar).

PYTHON ?= python3
VENV := .venv
MS_VENV := .venv-ministack
MINISTACK_VERSION := 1.5.33
# the boto3 that matches the botocore ministack pins
MINISTACK_BOTO3_VERSION := 1.43.106
# checkov, the template scanner of tests/infra/test_checkov.py, in a virtualenv of its own: it pins boto3 and
# botocore 1.35, networkx 2.6 and packaging 23, which the project's own pins would fight.
CHECKOV_VENV := .venv-checkov
CHECKOV_VERSION := 3.3.30
PY := $(VENV)/bin/python
# The oldest aws-cdk-lib the construct supports: the lower bound of the `cdk` extra in pyproject.toml (read
# from there, the one place it is written). `make cdk-lowest` synthesizes a user's app with exactly it.
CDK_LOWEST := $(shell sed -n 's/.*"aws-cdk-lib>=\([0-9][0-9.]*\),<3".*/\1/p' pyproject.toml)
LOWEST_VENV := .venv-cdk-lowest
export CDK_DISABLE_CLI_TELEMETRY := true
export JSII_SILENCE_WARNING_END_OF_LIFE_NODE_VERSION := 20
export PIP_DISABLE_PIP_VERSION_CHECK := 1

.PHONY: install demo test lint unit bench soak model mutants synth clean cdk-lowest

install: $(VENV)/.installed $(MS_VENV)/.installed $(CHECKOV_VENV)/.installed node_modules/.installed

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

$(CHECKOV_VENV)/.installed: Makefile
	test -x $(CHECKOV_VENV)/bin/python || $(PYTHON) -m venv $(CHECKOV_VENV)
	$(CHECKOV_VENV)/bin/python -m pip install --quiet 'checkov==$(CHECKOV_VERSION)'
	touch $@

node_modules/.installed: package.json package-lock.json
	npm ci --no-audit --no-fund --loglevel=error
	touch $@

# Its own virtualenv: the package with its `cdk` extra at the lowest aws-cdk-lib (and no cdk-nag), so that
# pip proves the extra installs with it beside the package's other requirements.
$(LOWEST_VENV)/.installed: pyproject.toml
	@test -n "$(CDK_LOWEST)" || { echo "pyproject.toml's cdk extra has no aws-cdk-lib>=X,<3" >&2; exit 1; }
	test -x $(LOWEST_VENV)/bin/python || $(PYTHON) -m venv $(LOWEST_VENV)
	$(LOWEST_VENV)/bin/python -m pip install --quiet --no-compile -e '.[cdk]' 'aws-cdk-lib==$(CDK_LOWEST)'
	$(LOWEST_VENV)/bin/python -m pip check
	touch $@

# A user's app (two KieUploaders in one stack, one in another) synthesized with the lowest aws-cdk-lib;
# tests/infra/test_distribution.py synthesizes the same app with the pinned, newest one.
cdk-lowest: $(LOWEST_VENV)/.installed
	rm -rf .local/cdk-lowest
	$(LOWEST_VENV)/bin/python tests/infra/user_app.py .local/cdk-lowest --expect-no-cdk-nag

demo: install
	$(PY) -m kie_uploader.demo $(ARGS)

lint: install
	$(VENV)/bin/ruff check .
	$(VENV)/bin/mypy functions/uploader src infra bench tests

# Two pytest-xdist workers, each with servers of its own; a test module stays on one worker (its module
# fixtures, e.g. a deployed stack, are built once). Most of the suite waits on the local servers, so two
# workers halve the wall time on this 2-core machine. TEST_WORKERS=0 runs it in one process.
TEST_WORKERS ?= 2
test: install lint cdk-lowest
	$(VENV)/bin/pytest -n $(TEST_WORKERS) --dist loadfile $(ARGS)

unit: install
	$(VENV)/bin/pytest tests/unit $(ARGS)

bench: install
	$(PY) -m bench.run $(ARGS)

soak: install
	SOAK_OBJECTS=1000 $(VENV)/bin/pytest tests/e2e/test_soak.py $(ARGS)

# The record's model-based test with many more generated histories than make test's 12, in MODEL_SHARDS
# pytest-xdist workers (each with servers of its own; the histories mostly wait on S3's clock and kie.ai).
# Each violation is also written to .local/model-report.jsonl when found: Hypothesis may report a failing
# history it could not replay (the world differs the second time) as FlakyStrategyDefinition instead.
model: install
	mkdir -p .local
	MODEL_REPORT=$${MODEL_REPORT:-.local/model-report.jsonl} MODEL_PROGRESS=$${MODEL_PROGRESS:-.local/model-progress.txt} \
	MODEL_EXAMPLES=$${MODEL_EXAMPLES:-2000} MODEL_SHARDS=$${MODEL_SHARDS:-3} $(VENV)/bin/pytest -n $${MODEL_SHARDS:-3} -p no:randomly tests/integration/test_model.py $(ARGS)

# The model test against mutated copies of the function (a-e) and the function before issue 21: each must fail.
mutants: install
	$(PY) -m tests.mutations $(ARGS)

synth: install
	node_modules/.bin/cdk synth --no-notices --quiet

clean:
	rm -rf cdk.out .local .pytest_cache .ruff_cache .mypy_cache
