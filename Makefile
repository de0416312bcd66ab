# mailscore: `make run` scores emails end to end on the local emulators,
# `make test` runs the unit and emulator tests. Both set up .venv first.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
CORPUS ?=
OUT ?= out
HISTORY ?=
SHADOW ?=
PYTEST_ARGS ?=
# Deployment (infra/terraform): packages, checks, plan/apply.
PACKAGE_DIR ?= out/package
MODEL_DIR ?= models/active
TF_DIR := infra/terraform
TERRAFORM ?= terraform
CHECKOV_VENV ?= .venv-checkov
CHECKOV_ENV := CKV_SKIP_PACKAGE_UPDATE_CHECK=true BC_SKIP_MAPPING=TRUE
# `make audit`: pip-audit in its own virtualenv, against this vulnerability service.
AUDIT_VENV ?= .venv-audit
AUDIT_SERVICE ?= pypi

.PHONY: venv run test test-unit train evaluate score bench chaos fuzz audit clean help package lint-infra fmt-infra checkov plan deploy
# `make evaluate` defaults to the real corpus beside the project when it is there.
EVAL_CORPUS ?= $(or $(CORPUS),$(if $(wildcard ../shared/corpus/phish),../shared/corpus,data/train))


help:
	@echo "make run [CORPUS=DIR] [OUT=DIR] [HISTORY=DIR|none]  score emails end to end on the emulators"
	@echo "make test                                          unit + emulator tests"
	@echo "make run ... SHADOW=MODEL_DIR                       also score with a candidate model (verdicts get a shadow field)"
	@echo "make train [CORPUS=DIR]                            train models/active on phish/ and ham/ folders"
	@echo "make package [MODEL_DIR=DIR]                       build out/package/<function>.zip deterministically"
	@echo "make lint-infra                                    terraform fmt, checkov and the Terraform static tests"
	@echo "make plan | make deploy [AUTO_APPROVE=1]           terraform plan/apply of infra/terraform (needs credentials)"
	@echo "make bench [BENCH_COUNT=N] [BENCH_ROUNDS=N] [BENCH_ARGS=...]  throughput/latency per mode -> out/bench.json, .png"
	@echo "make chaos [CORPUS=DIR] [CHAOS_ARGS=...]            faults while emails flow; reconciled -> OUT/chaos.json"
	@echo "make fuzz [CORPUS=DIR] [FUZZ_ARGS=--count N]         mutation fuzzing of parser + features -> OUT/fuzz.json"
	@echo "make evaluate [CORPUS=DIR] [OUT=DIR]               leakage-safe evaluation: OUT/eval/report.{json,md} + plots"
	@echo "make audit [AUDIT_SERVICE=pypi|osv]                pip-audit the pinned requirements -> OUT/audit.json"

# The stamp is rebuilt only when the pinned requirements or the compiled twins
# (shared/mailscore/_native.pyx, built by setup.py) change: the second run is instant.
$(BIN)/.installed: requirements.txt requirements-dev.txt pyproject.toml setup.py shared/mailscore/_native.pyx
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check -r requirements-dev.txt -e .
	@$(BIN)/python -c "import mailscore.twins as t; print('mailscore: compiled twins built' if t.compiled() else 'mailscore: compiled twins NOT built (no C compiler?): the pure-Python twins run, same results, slower')"
	@touch $@

venv: $(BIN)/.installed

run: venv
	$(BIN)/mailscore run $(CORPUS) --out $(OUT) $(if $(HISTORY),--history $(HISTORY)) $(if $(SHADOW),--shadow $(SHADOW))

test: venv
	$(BIN)/python -m pytest $(PYTEST_ARGS)

test-unit: venv
	$(BIN)/python -m pytest tests/unit $(PYTEST_ARGS)

# Corpus: ../shared/corpus when present, else data/train (see shared/mailscore/bench.py).
BENCH_ARGS ?=
bench: venv
	$(BIN)/python -m mailscore.bench --out $(OUT) $(BENCH_ARGS)

# Faults injected while emails flow, then every input reconciled: OUT/chaos.json.
chaos: venv
	$(BIN)/python -m mailscore.chaos $(CORPUS) --out $(OUT) $(CHAOS_ARGS)

# Mutation fuzzing of the parser and feature extractor: OUT/fuzz.json.
fuzz: venv
	$(BIN)/python -m mailscore.fuzz $(or $(CORPUS),$(if $(wildcard ../shared/corpus/phish),../shared/corpus,data/train)) --out $(OUT)/fuzz.json $(FUZZ_ARGS)

train: venv
	$(BIN)/mailscore train $(or $(CORPUS),data/train)

evaluate: venv
	$(BIN)/mailscore evaluate $(EVAL_CORPUS) --out $(OUT)/eval

clean:
	rm -rf $(OUT) .pytest_cache

# One zip per functions/<name>/: the function, the shared package and (for
# score_email) the model. Same source, same bytes; see infra/package_functions.py.
package:
	$(PYTHON) infra/package_functions.py --out $(PACKAGE_DIR) --model-dir $(MODEL_DIR)

# checkov lives in its own virtualenv: its pins (packaging<24, boto3, ...)
# must not meet the project's. Rebuilt only when its pins change.
$(CHECKOV_VENV)/bin/.installed: infra/requirements-checkov.txt
	@test -x $(CHECKOV_VENV)/bin/python || $(PYTHON) -m venv $(CHECKOV_VENV)
	$(CHECKOV_VENV)/bin/python -m pip install --quiet --disable-pip-version-check -r infra/requirements-checkov.txt
	@touch $@

# Offline: --skip-download and the two variables keep checkov from calling
# its platform or PyPI; the policies it runs ship inside the package.
checkov: $(CHECKOV_VENV)/bin/.installed
	$(CHECKOV_ENV) $(CHECKOV_VENV)/bin/checkov --directory $(TF_DIR) --framework terraform \
		--skip-download --download-external-modules false --compact --quiet

# pip-audit lives in its own virtualenv too (rebuilt only when its pins change). It
# resolves requirements*.txt in a temporary venv of its own and looks every
# resolved release up in the vulnerability service; infra/scripts/audit.py turns
# the result into one summary, and a service that cannot be reached or answers
# for no package into a clear failure (exit 2 or 3), never a silent pass.
$(AUDIT_VENV)/bin/.installed: infra/requirements-audit.txt
	@test -x $(AUDIT_VENV)/bin/python || $(PYTHON) -m venv $(AUDIT_VENV)
	$(AUDIT_VENV)/bin/python -m pip install --quiet --disable-pip-version-check -r infra/requirements-audit.txt
	@touch $@

audit: $(AUDIT_VENV)/bin/.installed
	$(AUDIT_VENV)/bin/python infra/scripts/audit.py --service $(AUDIT_SERVICE) --out $(OUT)/audit.json \
		requirements.txt requirements-dev.txt

fmt-infra:
	$(TERRAFORM) fmt -recursive $(TF_DIR)

# terraform fmt needs only the terraform binary (no provider, no network).
# Without terraform the fmt check is skipped, loudly; checkov and the static
# tests still run.
lint-infra: venv checkov
	@if command -v $(TERRAFORM) >/dev/null 2>&1; then \
		echo "lint-infra: $(TERRAFORM) fmt -check -recursive $(TF_DIR)"; \
		$(TERRAFORM) fmt -check -recursive -diff $(TF_DIR) || { echo "lint-infra: run 'make fmt-infra'"; exit 1; }; \
	else \
		echo "################################################################"; \
		echo "lint-infra: WARNING: terraform not installed; fmt check SKIPPED"; \
		echo "################################################################"; \
	fi
	$(BIN)/python -m pytest tests/unit/test_terraform.py tests/unit/test_package.py $(PYTEST_ARGS)

# Need Google Cloud credentials; they stop with what is missing otherwise.
plan: package
	PACKAGE_DIR=$(PACKAGE_DIR) infra/scripts/terraform.sh plan

deploy: package
	PACKAGE_DIR=$(PACKAGE_DIR) infra/scripts/terraform.sh apply
