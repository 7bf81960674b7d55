# The two commands of the README: `make ingest MUSIC=~/Music` and `make test`.
# Each creates .venv and installs what is missing first.
SHELL := /bin/bash
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-$(shell cat pyproject.toml requirements.lock 2>/dev/null | sha1sum | cut -c1-12)
MUSIC ?= $(HOME)/Music
PYTEST_ARGS ?=

# Reproducible installs. requirements.lock pins every dependency (and theirs) to one version
# with the sha256 of each of its files, and pip installs it in hash-checking mode: a file
# that differs is refused, and nothing unlocked comes in (--no-deps).
# torch, torchvision and torchaudio are pinned exactly (pyproject.toml) but not in the lock:
# torch drags in its CUDA stack (nvidia-*, cuda-*, triton: about 3 GB, pinned by torch's own
# metadata: exactly, but for cuda-bindings, cuda-pathfinder and nvidia-nvjitlink, which take
# the newest in a range), and those builds install from this machine kind's disk, which
# holds other files than the index for some of them: hash mode would refuse them, and
# resolving them for the lock means fetching gigabytes. So the lock holds no CUDA package
# at all; the pure-Python dependencies of the three (sympy, networkx, jinja2, fsspec,
# filelock, pillow...) are locked like the rest.
# `make lock` regenerates the lock after a change to pyproject.toml's dependencies.
PINNED := torch==2.14.1 torchvision==0.29.1 torchaudio==2.11.0
define LOCK_INPUT
import tomllib
project = tomllib.load(open("pyproject.toml", "rb"))["project"]
extras = project["optional-dependencies"]
kept = [d for d in project["dependencies"] if d.split("==")[0] not in ("torch", "torchvision", "torchaudio")]
torch_own = ["filelock", "typing-extensions", "setuptools", "sympy", "networkx", "jinja2", "fsspec", "pillow"]
print("\n".join(kept + torch_own + extras["monitor"] + extras["dev"]))
endef
export LOCK_INPUT

.PHONY: install ingest test lint typecheck bench lock clean

$(STAMP): pyproject.toml requirements.lock
	@$(PYTHON) -c 'import sys; sys.exit(sys.version_info[:2] < (3, 11))' || \
	  { echo "genrectl needs Python 3.11+ (found $$($(PYTHON) --version))"; exit 1; }
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --require-hashes --no-deps -r requirements.lock
	$(BIN)/python -m pip install --quiet $(PINNED)
	$(BIN)/python -m pip install --quiet --no-deps --no-build-isolation -e '.[dev]'
	$(BIN)/python -m pip check
	rm -f $(VENV)/.installed-*
	touch $@

install: $(STAMP)

lock:
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	test -x $(BIN)/pip-compile || $(BIN)/python -m pip install --quiet pip-tools
	$(BIN)/python -c "$$LOCK_INPUT" > .lock.in
	$(BIN)/pip-compile --quiet --generate-hashes --allow-unsafe --strip-extras \
	  --no-emit-index-url --no-emit-find-links --custom-compile-command "make lock" \
	  --output-file requirements.lock .lock.in
	rm -f .lock.in

ingest: install
	$(BIN)/genrectl db upgrade
	$(BIN)/genrectl ingest "$(MUSIC)"

lint: install
	$(BIN)/ruff check .

typecheck: install
	$(BIN)/mypy

test: install lint typecheck
	$(BIN)/python -m pytest $(PYTEST_ARGS)

# `make bench`: every speed figure of BENCHMARKS.md's target table, in about 20 minutes on
# the 2-core development machine. GTZAN tracks when GENRECTL_GTZAN_DIR (or ../shared's
# gtzan-mini) is there, generated tunes otherwise. The transcoded libraries are cached in
# ~/.cache/genrectl-bench (the first run spends about 4 minutes making them).
GTZAN ?= $(firstword $(wildcard $(GENRECTL_GTZAN_DIR) ../shared/data/gtzan-mini))
BENCH_DATA := $(if $(GTZAN),--gtzan $(GTZAN))
bench: install
	$(BIN)/python bench/bench_decode.py $(BENCH_DATA)
	$(BIN)/python bench/bench_encoder.py $(BENCH_DATA) --tracks 20 --repeats 10
	$(BIN)/python bench/bench_inference.py
	$(BIN)/python bench/bench_pipeline.py $(BENCH_DATA)
	$(BIN)/python bench/bench_parallel.py
	$(BIN)/python bench/bench_database.py

clean:
	rm -rf $(VENV) .mypy_cache .ruff_cache .pytest_cache *.egg-info
