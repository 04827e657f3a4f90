# Set-up and the two README commands. `make example` and `make test` each build .venv first if needed.
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: setup example test lint bench-vision

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
