# Fresh machine: `make demo` and `make test` install everything they need (uv + uv.lock).
# Python 3.10 is selected by .python-version (lava-nc and lava-dl require < 3.11).
PYTHON ?= python
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: install demo test test-all bench clean

$(STAMP): pyproject.toml uv.lock
	$(PYTHON) -m pip install --quiet --disable-pip-version-check uv
	$(PYTHON) -m uv sync --frozen
	touch $@

install: $(STAMP)

demo: install  ## convert the bundled CartPole DQN, run 10 episodes on Lava (fixed-point), print a table
	$(BIN)/lavaloop convert checkpoints/cartpole_dqn.pt --env CartPole-v1 -o build/cartpole.h5
	$(BIN)/lavaloop run build/cartpole.h5 --episodes 10 --json build/demo.json

test: install  ## lint + the suite CI runs (~11 min here); slow end-to-end cases excluded
	$(BIN)/ruff check .
	$(BIN)/python -m pytest -m "not slow"

test-all: install  ## lint + everything, including the slow end-to-end cases
	$(BIN)/ruff check .
	$(BIN)/python -m pytest

bench: install  ## T x percentile x readout sweep on CartPole, on Ray -> results/sweeps/cartpole/
	$(BIN)/lavaloop sweep benchmarks/cartpole_sweep.toml --workers 2

clean:
	rm -rf build $(VENV)
