# ovslite: every target installs what it needs, so each works on a fresh Debian machine as root.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
# command:debian-package pairs the tests, demo and benchmarks run (the systemd
# service tests boot a container: systemd-nspawn, debootstrap, nsenter; see
# integration/nspawn.py; tests/test_deb_tools.py checks every tool list is here)
DEB_TOOLS := ip:iproute2 ping:iputils-ping iperf3:iperf3 tcpdump:tcpdump ethtool:ethtool \
             trafgen:netsniff-ng pgrep:procps sysctl:procps ss:iproute2 timeout:coreutils \
             systemd-nspawn:systemd-container debootstrap:debootstrap nsenter:util-linux

.PHONY: install deps-system test unit integration lint demo demo-overlay bench clean

install: deps-system $(STAMP)

$(STAMP): pyproject.toml
	@$(PYTHON) -c 'import sys; sys.exit(sys.version_info < (3, 11))' || \
	  { echo "ovslite needs Python >= 3.11 (found $$($(PYTHON) --version))"; exit 1; }
	@[ -x $(PY) ] || $(PYTHON) -m venv $(VENV) || \
	  { echo "python3 -m venv failed: apt-get install python3-venv"; exit 1; }
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e '.[test,bench]'
	@touch $@

deps-system:
	@missing=""; for pair in $(DEB_TOOLS); do \
	  command -v $${pair%%:*} >/dev/null 2>&1 || missing="$$missing $${pair##*:}"; done; \
	if [ -n "$$missing" ]; then \
	  echo "installing Debian packages:$$missing"; \
	  if [ "$$(id -u)" != 0 ]; then echo "run as root to install:$$missing"; exit 1; fi; \
	  apt-get update -q >/dev/null && DEBIAN_FRONTEND=noninteractive apt-get install -y -q $$missing >/dev/null; \
	fi

test: install unit integration

unit: install
	$(PY) -m pytest tests -q -rs

integration: install
	$(PY) -m pytest integration -q -m integration -rs

lint: install
	$(VENV)/bin/ruff check .

demo: install
	$(PY) integration/demo.py $(if $(KEEP),--keep) $(if $(QUICK),--quick)

# three hosts, each its own ovslited, joined by a vxlan full mesh (docs/overlay.md)
demo-overlay: install
	$(PY) integration/demo_overlay.py $(if $(QUICK),--quick)

bench: install
	$(PY) -m integration.bench $(if $(QUICK),--quick) $(BENCH_ARGS)

clean:
	rm -rf $(VENV) build *.egg-info .pytest_cache .ruff_cache

# install-service: ovslite system-wide as a systemd service (docs/service.md): a venv
# in SERVICE_VENV, ovslited and ovslite-ctl in /usr/local/bin, the unit, the group
# `ovslite` whose members may use the control socket. WHEELS=DIR installs offline
# from a directory of wheels instead of building this source tree.
SERVICE_VENV ?= /opt/ovslite/venv
UNIT_DIR ?= /etc/systemd/system
BIN_DIR ?= /usr/local/bin
.PHONY: install-service
install-service:
	@[ "$$(id -u)" = 0 ] || { echo "install-service: run as root"; exit 1; }
	@$(PYTHON) -c 'import sys; sys.exit(sys.version_info < (3, 11))' || \
	  { echo "ovslite needs Python >= 3.11 (found $$($(PYTHON) --version))"; exit 1; }
	@[ -x $(SERVICE_VENV)/bin/python ] || $(PYTHON) -m venv $(SERVICE_VENV) || \
	  { echo "python3 -m venv failed: apt-get install python3-venv"; exit 1; }
	$(SERVICE_VENV)/bin/python -m pip install -q \
	  $(if $(WHEELS),--no-index --find-links $(WHEELS) --force-reinstall ovslite,.)
	mkdir -p $(BIN_DIR) $(UNIT_DIR)
	ln -sfn $(SERVICE_VENV)/bin/ovslited $(BIN_DIR)/ovslited
	ln -sfn $(SERVICE_VENV)/bin/ovslite-ctl $(BIN_DIR)/ovslite-ctl
	getent group ovslite >/dev/null || groupadd --system ovslite
	sed 's|/opt/ovslite/venv|$(SERVICE_VENV)|g' systemd/ovslite.service > $(UNIT_DIR)/.ovslite.service.tmp
	chmod 644 $(UNIT_DIR)/.ovslite.service.tmp
	mv -f $(UNIT_DIR)/.ovslite.service.tmp $(UNIT_DIR)/ovslite.service
	@if [ -d /run/systemd/system ]; then \
	  systemctl daemon-reload && \
	  echo "installed: systemctl enable --now ovslite (or systemctl restart ovslite after an upgrade)"; \
	else \
	  echo "systemd is not running here (PID 1 is $$(cat /proc/1/comm)): skipped systemctl daemon-reload"; \
	fi
