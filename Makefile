# Two commands do everything on a fresh machine:
#   make demo   set up .venv, then publish a DP synthetic release of the bundled Adult data
#   make test   set up .venv, then lint and run the test suite (make check: the fast lane)
PYTHON ?= python3.11
VENV   := .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed
export PREFECT_HOME ?= $(CURDIR)/.prefect
export SYNTH_HOME ?= $(CURDIR)/.synth
export PREFECT_SERVER_ANALYTICS_ENABLED := false
export DO_NOT_TRACK := 1

.PHONY: demo demo-images demo-medical demo-multitable serve test check lint venv clean browser postgres

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

# DP image release of the bundled Fashion-MNIST subset (data/fashion-mnist, 5,000 images).
demo-images: $(STAMP)
	$(PY) -m flows.release --input data/fashion-mnist --schema schemas/fashion_mnist.yaml \
		--epsilon 10 --delta 1e-5 --rows 2000 --out releases/fashion-mnist-demo --overwrite \
		--epochs 3 --batch-size 128

# DP release of the bundled, fabricated medical table (data/medical): identifiers dropped,
# quasi-identifiers generalised per HIPAA Safe Harbor, survival outcome kept consistent.
demo-medical: $(STAMP)
	$(PY) -m flows.release --input data/medical/patients.csv.gz --schema schemas/medical_demo.yaml \
		--epsilon 1 --rows 3000 --out releases/medical-demo --overwrite

# Person-level DP release of two linked tables, the bundled PBC trial (data/pbc): patients
# and their follow-up visits, one Parquet file each, joined on fresh synthetic keys.
demo-multitable: $(STAMP)
	$(PY) -m flows.release --input patients=data/pbc/pbc.csv.gz \
		--input visits=data/pbc/pbcseq.csv.gz --schema schemas/pbc.yaml \
		--epsilon 10 --rows 418 --out releases/pbc-demo --overwrite

# The platform as a service: Prefect server (UI at http://127.0.0.1:$(SERVE_PORT), SQLite in
# $(PREFECT_HOME)) plus a deployment per flows/deployments/*.yaml, served; Ctrl-C stops both.
SERVE_HOST ?= 127.0.0.1
SERVE_PORT ?= 4200
serve: $(STAMP)
	$(PY) -m flows.serve --host $(SERVE_HOST) --port $(SERVE_PORT)

# The suite runs in TEST_WORKERS processes (pytest-xdist), each test file whole in one of
# them (its module-scoped fixtures, servers and fitted models, are set up once); each
# worker's torch uses one thread. `make test` (CI) lints, then runs every test; `make check` is the fast lane of the
# edit-test loop: lint, then the tests not marked slow, stopping at the first failure.
TEST_WORKERS ?= 2
test: $(STAMP) browser postgres lint
	$(PY) -m pytest -q -n $(TEST_WORKERS) --dist loadfile

check: $(STAMP) lint
	$(PY) -m pytest -q -n $(TEST_WORKERS) --dist loadfile -m "not slow" -x

# ruff (lint), mypy (types of the library) and import-linter (layers, no cycles)
lint: $(STAMP)
	$(VENV)/bin/ruff check schemas synth pipelines flows tests bench
	$(VENV)/bin/mypy
	$(VENV)/bin/lint-imports

# The report test looks at an HTML report in headless Chromium (Debian's package); install it
# where this machine lets us (root and apt-get), else that one test is skipped.
browser:
	@command -v chromium >/dev/null 2>&1 || { [ "$$(id -u)" = 0 ] && command -v apt-get \
		>/dev/null 2>&1 && apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get \
		install -y -qq --no-install-recommends chromium fonts-dejavu-core >/dev/null; } \
		|| echo "chromium is not installed: the report screenshot test will be skipped"

# tests/test_postgres.py starts a throwaway PostgreSQL server (Debian's package) for the
# budget ledger and Prefect's server; install it where this machine lets us, else skipped.
postgres:
	@command -v pg_ctl >/dev/null 2>&1 || ls /usr/lib/postgresql/*/bin/postgres >/dev/null \
		2>&1 || { [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1 && apt-get \
		update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq \
		--no-install-recommends postgresql >/dev/null; } \
		|| echo "PostgreSQL is not installed: the PostgreSQL tests will be skipped"

clean:
	rm -rf $(VENV) releases .prefect
