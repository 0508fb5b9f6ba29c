# Every target sets up what it needs: a virtual environment in .venv with jaxinv
# installed (editable) and, where possible, Debian's libvlfeat1 for the reference tests.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
OUT ?= outputs

.PHONY: demo test test-slow benchmark vlfeat clean

$(VENV)/.installed: setup.cfg pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e '.[test]'
	touch $@

vlfeat:
	@sh .ci/ensure_vlfeat.sh

demo: $(VENV)/.installed
	$(VENV)/bin/jaxinv-invert --output_dir=$(OUT)/invert

test: $(VENV)/.installed vlfeat
	$(PY) -m pytest -q

test-slow: $(VENV)/.installed vlfeat
	$(PY) -m pytest -q -m slow

benchmark: $(VENV)/.installed vlfeat
	$(PY) -m benchmarks.features
	$(PY) -m benchmarks.engine
	$(PY) -m benchmarks.nets --convolutions=auto,direct --cpu_kernels=library,xla
	$(PY) -m benchmarks.winograd
	$(PY) -m benchmarks.strided
	$(PY) -m benchmarks.compile_reuse
	$(PY) -m benchmarks.startup

clean:
	rm -rf $(VENV) $(OUT)
