# The README's two commands:
#   make reproduce   regenerate every figure and table (papermill; PROFILE=cpu by default)
#   make test        the import contract, unit tests, then nbval on the notebooks' smoke copies
#                    (tests/notebooks/)
# Both create/update the local virtual environment .venv first.
#
#   make lab         JupyterLab at the repository root (notebooks/ show the cpu results; figures/ beside)
#
#   make device-check  on a new machine with a GPU: the device works, the estimators agree there,
#                    a paper run's cost there and on the CPU, the plan recalibrated on it
#
#   make plan        the data sets missing from disk and the totals of the runs the notebooks would
#                    launch at PROFILE on this device (ROWS=1: every run); trains nothing (under a minute)
#
# Where the runs execute (reproduce): DEVICE=auto|cpu|cuda, EXECUTOR=local|slurm|dask,
# JOBS=N (local processes; JOBS=auto on GPUs: as many runs per GPU as fit by the memory
# `make preflight` measured), GPU_MEM=GB (one GPU's memory for the plan's memory table and
# JOBS=auto; default the device's, else 80), THREADS=N (torch threads per run), RUNS=<run store; a shared
# absolute path for slurm/dask>, SCHEDULER=host:port (dask), SLURM_CONFIG=<TOML of submitit
# parameters>, PARTITION=, GPUS= (per job), TIME= (minutes per job) for slurm.
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
DEVICE ?=
EXECUTOR ?=
SCHEDULER ?=
JOBS ?=
THREADS ?=
GPU_MEM ?=
STAGE ?=
BUDGET ?=
RESUME ?=
PREFLIGHT_STORE ?=
RUNS ?=
SLURM_CONFIG ?=
PARTITION ?=
GPUS ?=
TIME ?=
RECOMPUTE ?=

BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

ifneq ($(OFFLINE_DATA),)
export BREAKEVEN_DATA := $(CURDIR)/.data
endif

.PHONY: reproduce plan preflight device-check test lab lint benchmark data env clean-figures

env: $(STAMP)

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet $(TORCH_SPEC)
	$(BIN)/python -m pip install --quiet -e '.[test,cluster]'
	touch $(STAMP)

data:
ifneq ($(OFFLINE_DATA),)
	bash $(OFFLINE_DATA)/unpack.sh .data
endif

RUN_OPTS = $(if $(NOTEBOOKS),--notebooks $(NOTEBOOKS)) $(if $(DEVICE),--device $(DEVICE)) \
	$(if $(EXECUTOR),--executor $(EXECUTOR)) $(if $(SCHEDULER),--scheduler $(SCHEDULER)) \
	$(if $(JOBS),--jobs $(JOBS)) $(if $(THREADS),--threads $(THREADS)) $(if $(RUNS),--run-store $(RUNS)) \
	$(if $(SLURM_CONFIG),--slurm-config $(SLURM_CONFIG)) $(if $(GPU_MEM),--gpu-mem $(GPU_MEM))
SLURM_ENV = $(if $(PARTITION),BREAKEVEN_SLURM_PARTITION=$(PARTITION)) $(if $(GPUS),BREAKEVEN_SLURM_GPUS=$(GPUS)) \
	$(if $(TIME),BREAKEVEN_SLURM_TIME=$(TIME))

reproduce: $(STAMP) data
	$(SLURM_ENV) $(if $(RECOMPUTE),RECOMPUTE=$(RECOMPUTE)) $(BIN)/python scripts/reproduce.py --profile $(PROFILE) $(RUN_OPTS)

# PROFILE (default paper here) on the CPU: every run built with one forward and backward pass;
# every signature executed at full size for 3 steps (memory, seconds per step and measurement);
# every notebook executed on those truncated runs; report in figures/preflight_<profile>.md
# (STAGE=1|2|3|all, PREFLIGHT_STORE=<dir> keeps the truncated runs, BUDGET=<minutes> starts no
# signature whose estimate, scaled by the ratio measured so far, runs past that (cheapest first),
# RESUME=1 goes on in PREFLIGHT_STORE where an earlier one stopped)
preflight: $(STAMP) data
	$(BIN)/python scripts/preflight.py --profile $(if $(filter command line,$(origin PROFILE)),$(PROFILE),paper) \
		$(if $(NOTEBOOKS),--notebooks $(NOTEBOOKS)) $(if $(STAGE),--stage $(STAGE)) \
		$(if $(PREFLIGHT_STORE),--store $(PREFLIGHT_STORE)) $(if $(BUDGET),--budget $(BUDGET)) \
		$(if $(RESUME),--resume)

# first thing on a machine with a GPU: CUDA visible, the estimators on it against dense oracles,
# notebook 1's paper run timed there and on the CPU, the plan recalibrated (without a GPU: the
# CPU half, a few minutes)
device-check: $(STAMP) data
	$(BIN)/python scripts/device_check.py $(if $(DEVICE),--device $(DEVICE))

plan: $(STAMP)
	$(BIN)/python scripts/reproduce.py --plan --profile $(PROFILE) $(RUN_OPTS) $(if $(ROWS),--rows)

test: $(STAMP)
	$(BIN)/lint-imports --no-cache
	$(BIN)/python -m pytest tests --nbval-lax -p no:cacheprovider

# JupyterLab rooted at the repository, opening the first notebook (as root, e.g. in a container,
# with --allow-root); LAB_OPTS passes more options (e.g. LAB_OPTS="--no-browser --port 8890")
lab: $(STAMP)
	$(BIN)/jupyter lab --ServerApp.root_dir="$(CURDIR)" $(if $(filter 0,$(shell id -u)),--allow-root) \
		$(LAB_OPTS) notebooks/01_break_even.ipynb

# ruff (package, tests, benchmarks, scripts and the notebook sources) and the import
# contract of pyproject.toml [tool.importlinter] (layers, independent paper sections, no cycles)
lint: $(STAMP)
	$(BIN)/ruff check breakeven_utils tests benchmarks scripts
	$(BIN)/lint-imports --no-cache

# every estimator against curvlinops, hessian-eigenthings, BackPACK and pyhessian, one table
# (QUICK=1: under 5 minutes); installs the bench extra first
benchmark: $(STAMP) data
	$(BIN)/python -m pip install --quiet -e '.[test,cluster,bench]'
	$(BIN)/python benchmarks/peers.py $(if $(QUICK),--quick)
