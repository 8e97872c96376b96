# Two commands do all set-up on a fresh machine: `make demo` and `make test`.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
DEB_PACKAGES := iproute2 ieee-data chromium systemd openssl
export PYTHONDONTWRITEBYTECODE := 1

.PHONY: deps geoip demo test lint bench clean

# IPFire Location data (places UK cloud regions in GB; docs/geoip.md) from Debian's
# tor-geoipdb, extracted without installing it: that package depends on tor.
GEOIP_DIR ?= $(VENV)/share/scanner

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
	$(MAKE) geoip
	touch $@

geoip: $(GEOIP_DIR)/geoip

$(GEOIP_DIR)/geoip:
	@set -e; tmp=$$(mktemp -d); trap 'rm -rf "$$tmp"' EXIT; \
	(cd "$$tmp" && (apt-get download tor-geoipdb >/dev/null 2>&1 || \
	  (apt-get update -qq && apt-get download tor-geoipdb >/dev/null))); \
	dpkg-deb -x "$$tmp"/tor-geoipdb_*_all.deb "$$tmp/x"; \
	mkdir -p $(GEOIP_DIR); \
	install -m 0644 "$$tmp/x/usr/share/tor/geoip6" $(GEOIP_DIR)/geoip6; \
	install -m 0644 "$$tmp/x/usr/share/tor/geoip" $@; \
	echo "GeoIP: $$(grep -m1 Generated: $@ | sed 's/^# *//') -> $@"

# Bring up the combined discovery lab (every protocol; lab/scenarios/discovery.toml),
# scan it from the scanner namespace with an ONVIF credentials file, print the
# report, tear down. Config, credentials (0600) and database live in a temp dir.
DEMO_SCENARIO := discovery
demo: $(STAMP)
	@set -e; dir=$$(mktemp -d); trap '$(PY) -m lab down >/dev/null; rm -rf "$$dir"' EXIT; \
	(umask 077; printf '[[onvif]]\ncidr = "198.51.100.11/32"\nusername = "admin"\npassword = "Lab-Only-9f3e"\n' \
	  > "$$dir/onvif.toml"); \
	printf '[onvif]\ncredentials_file = "%s"\n\n[store]\ndb = "%s"\n' "$$dir/onvif.toml" "$$dir/demo.db" \
	  > "$$dir/scanner.toml"; \
	$(PY) -m lab up $(DEMO_SCENARIO); \
	$(PY) -m lab run -- sh -c '"$$0" scan --once --config "$$1" --interface "$$LAB_IFACE" --cidr "$$LAB_CIDR"' \
	  "$$PWD/$(VENV)/bin/scanner" "$$dir/scanner.toml"; \
	$(VENV)/bin/scanner report --config "$$dir/scanner.toml"

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
