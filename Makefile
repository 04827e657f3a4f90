# Set-up and the two README commands. `make example` and `make test` each build .venv first if needed.
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: setup example test lint bench-vision peers

setup: $(STAMP)

# The pinned torch pair installs from the local wheel store; the package's own torch range then
# resolves to it instead of pulling a newer multi-GB build from the registry.
$(STAMP): pyproject.toml
	test -x $(PY) || python3 -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet torch==2.14.1 torchvision==0.29.1
	$(PY) -m pip install --quiet -e ".[test]"
	touch $(STAMP)

# The main job: chat with the bundled model about the bundled example screenshot and video (both drawn
# by its training curriculum's generators, held out: scripts/make_example_assets.py).
example: $(STAMP)
	$(VENV)/bin/mm-model chat "What is the title of the window?" --image mm_model/assets/example_window.png
	$(VENV)/bin/mm-model chat "Which way does the purple triangle move?" --video mm_model/assets/example_moving.mp4

lint: $(STAMP)
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

# lmms-eval 0.7.3's own task code, the oracle the lmms-eval protocol's tests run against: its source
# only (the wheel unpacked, never installed: its dependencies are heavy). Offline, those tests skip.
LMMS_SRC := $(VENV)/lmms-eval-0.7.3
$(LMMS_SRC): | $(STAMP)
	-$(PY) -m pip download --quiet --no-deps lmms-eval==0.7.3 -d $(VENV)/wheels && \
		$(PY) -m zipfile -e $(VENV)/wheels/lmms_eval-0.7.3-py3-none-any.whl $(LMMS_SRC)

# pytest exits 5 when it collects nothing; treat that as a failure too.
test: lint $(LMMS_SRC)
	LMMS_EVAL_SRC=$$([ -d $(LMMS_SRC)/lmms_eval ] && realpath $(LMMS_SRC)) $(PY) -m pytest -q; rc=$$?; \
		if [ $$rc -eq 5 ]; then echo "pytest collected no tests" >&2; exit 1; fi; exit $$rc

bench-vision: $(STAMP)
	$(PY) -m benchmarks.vision_speed

# llama.cpp as benchmarks/lm_speed's peer (issue 37): llama-cpp-python built from its sdist for this CPU
# (GGML_NATIVE; minutes on 2 cores) and installed with the `peers` extra, then the sdist unpacked where
# benchmarks/gguf_export.py looks for llama.cpp's convert_hf_to_gguf.py. Not part of `test` (the sdist is
# ~77 MB and the build slow); without it the converter tests skip and lm_speed prints why it has no peer.
LLAMA_CPP_VERSION := 0.3.36
LLAMA_CPP_SDIST := $(VENV)/sdists/llama_cpp_python-$(LLAMA_CPP_VERSION).tar.gz
LLAMA_CPP_SRC := $(VENV)/llama_cpp_python-$(LLAMA_CPP_VERSION)
peers: $(LLAMA_CPP_SRC)
$(LLAMA_CPP_SRC): | $(STAMP)
	$(PY) -m pip download --quiet --no-deps --no-binary :all: llama-cpp-python==$(LLAMA_CPP_VERSION) -d $(VENV)/sdists
	CMAKE_ARGS="-DGGML_NATIVE=ON" $(PY) -m pip install $(LLAMA_CPP_SDIST)
	$(PY) -m pip install --quiet -e ".[test,peers]"
	tar xzf $(LLAMA_CPP_SDIST) -C $(VENV)
