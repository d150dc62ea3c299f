# tuneflow — local development. `make run` (whole flow locally) and `make test` are the entry points.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
# One build of the emulator's base model, shared by the tests, the emulator and `make run`.
export TUNEFLOW_EMULATOR_CACHE ?= $(CURDIR)/.data/cache
export TUNEFLOW_TEST_BASEMODEL_CACHE ?= $(TUNEFLOW_EMULATOR_CACHE)

.PHONY: run test lint unit e2e bench clean install package browser screenshots

INFRA_VENV := .venv-infra

VENDOR := shared/dashboard/static/vendor
install: $(STAMP) node_modules/.bin/azurite $(VENDOR)/uPlot.iife.min.js $(INFRA_VENV)/.installed

# The venv holds the app's runtime deps, the dev tools and the emulator's (CPU torch from disk).
$(STAMP): requirements.txt requirements-dev.txt emulator/requirements.txt
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -r requirements-dev.txt -r emulator/requirements.txt
	touch $@

# checkov (policy checks of infra/) in its own venv: its pins must not move the app's.
$(INFRA_VENV)/.installed: requirements-infra.txt
	test -x $(INFRA_VENV)/bin/python || $(PYTHON) -m venv $(INFRA_VENV)
	$(INFRA_VENV)/bin/python -m pip install --quiet --upgrade pip
	$(INFRA_VENV)/bin/python -m pip install --quiet -r requirements-infra.txt
	touch $@

# Azurite comes from npm into the project; tests start it on free ports and stop it.
node_modules/.bin/azurite: package.json
	npm install --no-audit --no-fund --loglevel=error
	touch $@

# The dashboard's chart library, from npm (package.json pins it) into the app's files: one file, deployed.
$(VENDOR)/uPlot.iife.min.js: node_modules/.bin/azurite
	mkdir -p $(VENDOR)
	cp node_modules/uplot/dist/uPlot.iife.min.js node_modules/uplot/dist/uPlot.min.css $(VENDOR)/

# The browser the dashboard's tests drive: Debian's chromium (as root, as CI runs; Playwright's own download
# cannot be fetched here).
browser:
	command -v chromium >/dev/null || (apt-get update -qq && \
		DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends chromium >/dev/null)

# The whole flow locally: DATASET=path/to/data.jsonl to run your own, MANIFEST=path/to/tuneflow.json to say
# what the run wants, KEEP=1 to keep the endpoint.
run: install
	$(PY) -m devstack.run $(if $(DATASET),--dataset $(DATASET)) $(if $(MANIFEST),--manifest $(MANIFEST)) \
		$(if $(KEEP),--keep) $(if $(FAST),--fast)

# The deployment package as azd builds it (.funcignore applied, requirements.txt alone), with the Python
# worker's loader beside it: .data/package/tuneflow.zip. tests/integration/test_package.py indexes it.
package: $(STAMP)
	$(PY) -m devstack.package --out .data/package --worker

lint: $(STAMP)
	$(VENV)/bin/ruff check .
	$(VENV)/bin/mypy

test: install browser lint
	$(PY) -m pytest -q

unit: $(STAMP)
	$(PY) -m pytest -q tests/unit

e2e: install browser
	$(PY) -m pytest -q tests/e2e

# The README's dashboard screenshots, taken by the browser tests through the real local stack.
screenshots: install browser
	TUNEFLOW_SCREENSHOTS=$(CURDIR)/docs $(PY) -m pytest -q tests/e2e/test_dashboard.py \
		tests/e2e/test_gate.py::test_a_good_canary_reaches_all_traffic_under_load_without_a_failed_call

bench: install
	$(PY) bench/validation/run.py
	$(PY) bench/validation/run.py --shape short
	$(PY) bench/validation/from_blob.py
	$(PY) bench/cold_start.py
	$(PY) bench/scoring/run.py
	$(PY) bench/scoring/streaming.py
	$(PY) bench/control_plane.py
	$(PY) bench/evaluation.py
	$(PY) bench/canary.py
	$(PY) bench/dashboard.py

clean:
	rm -rf $(VENV) $(INFRA_VENV) node_modules $(VENDOR) .mypy_cache .ruff_cache .pytest_cache .data
