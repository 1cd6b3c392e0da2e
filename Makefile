# Two commands do everything on a fresh machine:
#   make demo   set up .venv, then publish a DP synthetic release of the bundled Adult data
#   make test   set up .venv, then run the test suite
PYTHON ?= python3.11
VENV   := .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed
export PREFECT_HOME ?= $(CURDIR)/.prefect
export SYNTH_HOME ?= $(CURDIR)/.synth
export PREFECT_SERVER_ANALYTICS_ENABLED := false
export DO_NOT_TRACK := 1

.PHONY: demo test venv clean

venv: $(STAMP)

# torch is pinned to 2.13.0 (the CPU build here); see README for a CUDA build.
$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet "torch==2.13.0"
	$(PY) -m pip install --quiet -e ".[test]"
	touch $@

demo: $(STAMP)
	$(PY) -m flows.release --input data/adult/adult.data.gz --schema schemas/adult.yaml \
		--epsilon 1 --out releases/adult-demo --overwrite

test: $(STAMP)
	$(PY) -m pytest -q

clean:
	rm -rf $(VENV) releases .prefect
