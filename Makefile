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
# `make evaluate` defaults to the real corpus beside the project when it is there.
EVAL_CORPUS ?= $(or $(CORPUS),$(if $(wildcard ../shared/corpus/phish),../shared/corpus,data/train))

.PHONY: venv run test test-unit train evaluate score clean help

help:
	@echo "make run [CORPUS=DIR] [OUT=DIR] [HISTORY=DIR|none]  score emails end to end on the emulators"
	@echo "make test                                          unit + emulator tests"
	@echo "make run ... SHADOW=MODEL_DIR                       also score with a candidate model (verdicts get a shadow field)"
	@echo "make train [CORPUS=DIR]                            train models/active on phish/ and ham/ folders"
	@echo "make evaluate [CORPUS=DIR] [OUT=DIR]               leakage-safe evaluation: OUT/eval/report.{json,md} + plots"

# The stamp is rebuilt only when the pinned requirements change: the second run is instant.
$(BIN)/.installed: requirements.txt requirements-dev.txt pyproject.toml
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check -r requirements-dev.txt -e .
	@touch $@

venv: $(BIN)/.installed

run: venv
	$(BIN)/mailscore run $(CORPUS) --out $(OUT) $(if $(HISTORY),--history $(HISTORY)) $(if $(SHADOW),--shadow $(SHADOW))

test: venv
	$(BIN)/python -m pytest $(PYTEST_ARGS)

test-unit: venv
	$(BIN)/python -m pytest tests/unit $(PYTEST_ARGS)

train: venv
	$(BIN)/mailscore train $(or $(CORPUS),data/train)

evaluate: venv
	$(BIN)/mailscore evaluate $(EVAL_CORPUS) --out $(OUT)/eval

clean:
	rm -rf $(OUT) .pytest_cache
