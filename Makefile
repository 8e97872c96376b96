# Two commands do all set-up on a fresh machine: `make demo` and `make test`.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
DEB_PACKAGES := iproute2 ieee-data chromium
export PYTHONDONTWRITEBYTECODE := 1

.PHONY: deps demo test lint bench clean

# Debian packages the project needs (run as root; CI and the lab are root).
deps:
	@missing=""; for p in $(DEB_PACKAGES); do dpkg -s $$p >/dev/null 2>&1 || missing="$$missing $$p"; done; \
	if [ -n "$$missing" ]; then \
	  echo "installing Debian packages:$$missing"; \
	  (apt-get install -y -qq $$missing || (apt-get update -qq && apt-get install -y -qq $$missing)) >/dev/null; \
	fi

$(STAMP): pyproject.toml
	$(MAKE) deps
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e '.[test]'
	touch $@

# Bring the lab up, scan it from the scanner namespace, print the report, tear down.
demo: $(STAMP)
	@set -e; dir=$$(mktemp -d); trap '$(PY) -m lab down >/dev/null; rm -rf "$$dir"' EXIT; \
	$(PY) -m lab up foundation; \
	$(PY) -m lab run -- sh -c '"$$0" scan --once --interface "$$LAB_IFACE" --cidr "$$LAB_CIDR" --db "$$1"' \
	  "$$PWD/$(VENV)/bin/scanner" "$$dir/demo.db"; \
	$(VENV)/bin/scanner report --db "$$dir/demo.db"

lint: $(STAMP)
	$(VENV)/bin/ruff check scanner lab tests bench
	$(VENV)/bin/ruff format --check scanner lab tests bench
	$(VENV)/bin/mypy

test: $(STAMP) lint
	$(VENV)/bin/scanner fingerprints lint
	$(VENV)/bin/pytest -q

bench: $(STAMP)
	$(PY) -m bench

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache build dist
