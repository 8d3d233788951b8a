PYTHON ?= python
PIP ?= $(PYTHON) -m pip

.PHONY: install test lint demo

install:
	@$(PYTHON) -c "import tevit_hf, pytest, ruff, skvideo" 2>/dev/null || $(PIP) install -q -e ".[dev]"

lint: install
	$(PYTHON) -m ruff check src tests scripts
	$(PYTHON) -m ruff format --check src tests scripts
	mlinter --rules-toml .mlinter-rules.toml src/tevit_hf

test: install lint
	$(PYTHON) -m pytest -q -x tests

demo: install
	tevit-hf demo --output-dir demo_output
