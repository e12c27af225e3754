# escx developer and user entry points. `make help` lists them.
SHELL := /bin/bash
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
# Tests and demos never touch the network: W&B offline, Hugging Face offline.
export WANDB_MODE ?= offline
OFFLINE := HF_HUB_OFFLINE=1 HF_DATASETS_OFFLINE=1 WANDB_MODE=disabled
DATA ?=
STEPS ?=
EVAL_FILES ?=
SCALE ?= tiny
# Training recipe of demo and ablations: quick or esc (default: quick at SCALE=tiny, esc at base).
RECIPE ?=
DEVICES ?= 1
BENCH_ARGS ?=

.PHONY: help install test test-slow test-browser lint format bench data demo ablation-pretrain ablation-quantizer ablation-codebook ablation-codebook-kind ablation-recipe ablation-baseline ablation-causal clean

help: ## show this help
	@grep -E '^[a-zA-Z_-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-20s %s\n", $$1, $$2}'

$(STAMP): pyproject.toml constraints.txt
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -c constraints.txt -e ".[dev,eval,baselines,data,export]"
	touch $(STAMP)

install: $(STAMP) ## create .venv and install escx with the torch constraint

test: $(STAMP) ## run the test suite (fast tests; slow ones: make test-slow)
	$(OFFLINE) $(BIN)/pytest -q

test-slow: $(STAMP) ## run only the slow tests
	$(OFFLINE) $(BIN)/pytest -q -m slow

test-browser: $(STAMP) ## run the report's headless-Chromium test (needs the chromium package)
	$(OFFLINE) $(BIN)/pytest -q -m browser

lint: $(STAMP) ## ruff check + format check
	$(BIN)/ruff check escx tests benchmarks
	$(BIN)/ruff format --check escx tests benchmarks

format: $(STAMP) ## apply ruff fixes and formatting
	$(BIN)/ruff check --fix escx tests benchmarks
	$(BIN)/ruff format escx tests benchmarks

bench: $(STAMP) ## escx bench (speed, GFLOP/s vs matmul peak, train step, memory) + long-file RSS
	$(BIN)/python -m benchmarks.run -- $(BENCH_ARGS)

data: $(STAMP) ## prepare data/train and data/val (DATA=DIR to use a local folder)
	$(BIN)/python -m escx.data.prepare $(if $(DATA),--source $(DATA),--hf)

demo: $(STAMP) ## train a small codec on CPU and evaluate it (DATA=DIR, STEPS=300 for a smoke run, RECIPE=, PROCESSES=)
	$(BIN)/python -m escx.demo $(if $(DATA),--data $(DATA)) $(if $(STEPS),--steps $(STEPS)) $(if $(RECIPE),--recipe $(RECIPE)) $(if $(PROCESSES),--processes $(PROCESSES))

ABLATION_ARGS = --scale $(SCALE) --devices $(DEVICES) --data $(or $(DATA),data) $(if $(STEPS),--steps $(STEPS)) $(if $(EVAL_FILES),--eval-files $(EVAL_FILES)) $(if $(RECIPE),--recipe $(RECIPE)) $(if $(SEEDS),--seeds $(SEEDS))

ablation-pretrain: $(STAMP) ## ESC with vs without pre-training (STEPS=, SEEDS="53 54", SCALE=tiny|base, RECIPE=quick|esc, DEVICES=, DATA=)
	@test -d "$(or $(DATA),data)/train" || $(MAKE) data
	$(BIN)/escx ablation pretrain $(ABLATION_ARGS)

ablation-quantizer: $(STAMP) ## CS-RVQ/RVQ x Swin/conv matrix (STEPS=, SEEDS="53 54", SCALE=tiny|base, RECIPE=quick|esc, DEVICES=, DATA=)
	@test -d "$(or $(DATA),data)/train" || $(MAKE) data
	$(BIN)/escx ablation quantizer $(ABLATION_ARGS)

ablation-codebook: $(STAMP) ## pre-training vs k-means init / dead-entry restarts / EMA updates (STEPS=, SEEDS="53 54", SCALE=, RECIPE=, DEVICES=, DATA=)
	@test -d "$(or $(DATA),data)/train" || $(MAKE) data
	$(BIN)/escx ablation codebook $(ABLATION_ARGS)

ablation-codebook-kind: $(STAMP) ## ESC's VQ vs FSQ / LFQ (BSQ) / SimVQ / rotation trick (STEPS=, SEEDS="53 54", SCALE=, RECIPE=, DEVICES=, DATA=, EVAL_FILES=)
	@test -d "$(or $(DATA),data)/train" || $(MAKE) data
	$(BIN)/escx ablation codebook-kind $(ABLATION_ARGS)

ablation-recipe: $(STAMP) ## ESC's recipe vs the quick recipe, with quality-against-step curves (STEPS= default 4000, DEVICES=2 for two CPU processes as measured, SEEDS=, SCALE=, DATA=, EVAL_FILES=)
	@test -d "$(or $(DATA),data)/train" || $(MAKE) data
	$(BIN)/escx ablation recipe $(ABLATION_ARGS)

ablation-baseline: $(STAMP) ## ESC vs DAC at equal budget, Opus beside, the paper's quality/parameter/speed claims beside escx's (STEPS= default 3000, SEEDS=, SCALE=tiny|base, DEVICES=, DATA=, EVAL_FILES=)
	@test -d "$(or $(DATA),data)/train" || $(MAKE) data
	$(BIN)/escx ablation baseline $(ABLATION_ARGS)

ablation-causal: $(STAMP) ## the causal ESC (20 ms latency, streaming) vs the offline ESC at equal budget (STEPS=, SEEDS="53 54", SCALE=tiny|base, RECIPE=quick|esc, DEVICES=, DATA=, EVAL_FILES=)
	@test -d "$(or $(DATA),data)/train" || $(MAKE) data
	$(BIN)/escx ablation causal $(ABLATION_ARGS)

clean: ## remove runs, results and caches (keeps data/ and .venv)
	rm -rf runs results .pytest_cache .ruff_cache
