# mailscore: `make run` scores emails end to end on the local emulators,
# `make test` runs the unit and emulator tests. Both set up .venv first.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
CORPUS ?=
OUT ?= out
HISTORY ?=
PYTEST_ARGS ?=

.PHONY: venv run test test-unit train score bench clean help

help:
	@echo "make run [CORPUS=DIR] [OUT=DIR] [HISTORY=DIR|none]  score emails end to end on the emulators"
	@echo "make test                                          unit + emulator tests"
	@echo "make train [CORPUS=DIR]                            train models/active on phish/ and ham/ folders"
	@echo "make bench [BENCH_COUNT=N] [BENCH_ARGS=...]         throughput/latency per mode -> out/bench.json, out/bench.png"

# The stamp is rebuilt only when the pinned requirements change: the second run is instant.
$(BIN)/.installed: requirements.txt requirements-dev.txt pyproject.toml
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check -r requirements-dev.txt -e .
	@touch $@

venv: $(BIN)/.installed

run: venv
	$(BIN)/mailscore run $(CORPUS) --out $(OUT) $(if $(HISTORY),--history $(HISTORY))

test: venv
	$(BIN)/python -m pytest $(PYTEST_ARGS)

test-unit: venv
	$(BIN)/python -m pytest tests/unit $(PYTEST_ARGS)

# Corpus: ../shared/corpus when present, else data/train (see shared/mailscore/bench.py).
BENCH_ARGS ?=
bench: venv
	$(BIN)/python -m mailscore.bench --out $(OUT) $(BENCH_ARGS)

train: venv
	$(BIN)/mailscore train $(or $(CORPUS),data/train)

clean:
	rm -rf $(OUT) .pytest_cache
