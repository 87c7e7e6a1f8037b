# The README's two commands:
#   make reproduce   regenerate every figure and table (papermill; PROFILE=cpu by default)
#   make test        unit tests, then nbval on the committed smoke-run notebooks
# Both create/update the local virtual environment .venv first.
#
# Variables: PROFILE=smoke|cpu|paper, PYTHON (3.11+), VENV, TORCH_SPEC (the torch
# build to install first; the default pins the releases that lie on the project's
# offline machines, e.g. TORCH_SPEC="torch torchvision" takes the newest),
# OFFLINE_DATA=<dir with unpack.sh> unpacks an offline data copy into .data and
# uses it (otherwise BREAKEVEN_DATA or torchvision downloads are used).

PYTHON ?= python3
VENV ?= .venv
PROFILE ?= cpu
TORCH_SPEC ?= torch==2.14.1 torchvision==0.29.1
OFFLINE_DATA ?=
NOTEBOOKS ?=

BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

ifneq ($(OFFLINE_DATA),)
export BREAKEVEN_DATA := $(CURDIR)/.data
endif

.PHONY: reproduce test lint benchmark data env clean-figures

env: $(STAMP)

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet $(TORCH_SPEC)
	$(BIN)/python -m pip install --quiet -e '.[test]'
	touch $(STAMP)

data:
ifneq ($(OFFLINE_DATA),)
	bash $(OFFLINE_DATA)/unpack.sh .data
endif

reproduce: $(STAMP) data
	$(BIN)/python scripts/reproduce.py --profile $(PROFILE) $(if $(NOTEBOOKS),--notebooks $(NOTEBOOKS))

test: $(STAMP)
	$(BIN)/python -m pytest tests notebooks --nbval-lax -p no:cacheprovider

lint: $(STAMP)
	$(BIN)/ruff check breakeven_utils tests benchmarks scripts

benchmark: $(STAMP) data
	$(BIN)/python benchmarks/estimators.py
