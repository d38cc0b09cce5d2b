# The verbs a user types. Each target sets up what it needs: the virtual environment (torch
# first, pinned to the CPU build) and the CIFAR-10 data.
PY      ?= python3
VENV    ?= .venv
BIN     := $(VENV)/bin
# BNEXP_DATA, when set, is where the data is (and where `make data` writes it).
DATA    ?= $(or $(BNEXP_DATA),data)
SHARED  ?= ../shared
ARGS    ?= model=bn dataset.subset=10000 train.epochs=2
BENCH_ARGS ?=
PROFILE ?= quick
LAUNCHER ?= joblib

.PHONY: install data test test-slow train reproduce-figures calibrate report bench gpu-check lint clean wandb-sync wandb-dashboard

install: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml constraints.txt bnexp/__init__.py
	$(PY) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	# torch alone and first: the pinned CPU build, before anything that depends on it.
	$(BIN)/pip install -q -c constraints.txt torch==2.13.0
	$(BIN)/pip install -q -c constraints.txt -e '.[dev,launchers]'
	touch $@

data: install
	$(BIN)/python scripts/get_data.py --root $(DATA) --shared $(SHARED) cifar10

test: install data
	BNEXP_DATA=$(abspath $(DATA)) WANDB_MODE=offline $(BIN)/python -m pytest -m "not slow" -q

test-slow: install data
	BNEXP_DATA=$(abspath $(DATA)) WANDB_MODE=offline $(BIN)/python -m pytest -m slow -q

train: install data
	BNEXP_DATA=$(abspath $(DATA)) $(BIN)/bnexp-train $(ARGS)

# Calibration, then every claim's sweep, then the report: results/$(PROFILE)/{REPORT.md,claims.json,figures/}.
# Idempotent: complete runs are skipped, so an interrupted call resumes. LAUNCHER=joblib (this
# machine), submitit_local or submitit_slurm (ARGS_REPRODUCE="hydra.launcher.partition=gpu ...").
reproduce-figures: install data
	BNEXP_DATA=$(abspath $(DATA)) $(BIN)/python scripts/reproduce.py --profile $(PROFILE) --launcher $(LAUNCHER) $(if $(WANDB),--wandb) $(ARGS_REPRODUCE)

# The calibration stage alone: the tuning sweeps (tuning seeds, validation split), then
# results/$(PROFILE)/tuned.json, the constants the verdict sweeps read (bnexp/calibration.py).
calibrate: install data
	BNEXP_DATA=$(abspath $(DATA)) $(BIN)/python scripts/reproduce.py --profile $(PROFILE) --stage calibrate --launcher $(LAUNCHER) $(ARGS_REPRODUCE)

# The standard views of a project as a wandb workspace (needs a login): ENTITY=you PROFILE=quick.
wandb-dashboard: install
	$(BIN)/python scripts/dashboard.py --entity $(ENTITY) --profile $(PROFILE) --save

# Upload every offline wandb run under results/ (runs and report runs) once there is a network and a login.
wandb-sync: install
	@dirs=$$(find results -type d -name 'offline-run-*' | sort); \
	if [ -n "$$dirs" ]; then $(BIN)/wandb sync $$dirs; else echo "wandb-sync: no offline runs under results/"; fi

# The report alone, from the runs already under results/$(PROFILE)/runs.
report: install
	$(BIN)/python -m bnexp.report results/$(PROFILE)

# The whole GPU path in one command (about 8 minutes on one GPU): results/gpu/<device>.{json,txt}.
# DEVICE=cpu runs it at toy sizes (a few minutes), as the test suite does.
DEVICE ?= auto
GPU_CHECK_OUT ?= results/gpu
gpu-check: install data
	BNEXP_DATA=$(abspath $(DATA)) $(BIN)/python scripts/gpu_check.py --device $(DEVICE) --out $(GPU_CHECK_OUT) \
		$(if $(filter cpu,$(DEVICE)),--tiny)

bench: install data
	BNEXP_DATA=$(abspath $(DATA)) $(BIN)/python scripts/bench.py $(BENCH_ARGS)

lint: install
	$(BIN)/ruff check bnexp scripts tests

clean:
	rm -rf results/runs results/*/runs outputs multirun .pytest_cache
