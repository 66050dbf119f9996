# LCP toolkit. `make demo` and `make test` set everything up on a fresh Debian machine.
SHELL := /bin/bash
VENV ?= .venv
PY := $(VENV)/bin/python
LCP := $(VENV)/bin/lcp
STAMP := $(VENV)/.installed
APT_PKGS := opensta qflow-tech-osu018 iproute2
JOBS ?= 2
RUNS ?= runs
MODEL ?= $(RUNS)/lenet5_split4_w4a4/model.onnx

.PHONY: install apt demo test test-slow bench sim asic bitstream reproduce clean help

help:
	@echo "make demo       train (or reuse) LeNet-5 split4 w4a4, run the golden reference, print figures"
	@echo "make test       the default test suite (about 20 min on 2 cores at most)"
	@echo "make test-slow  the long suites (marked slow)"
	@echo "make bench      benchmarks with ratios against baselines measured in the same run"
	@echo "make sim        the demo model's held-out images through the RTL simulation (IMAGES=, WAVES=1)"
	@echo "make asic       ASIC synthesis of the demo core (PDK=osu018|asap7, CLOCK_MHZ=)"
	@echo "make bitstream  Vivado project and overlay for a PYNQ board (BOARD=pynq-z2|pynq-z1)"
	@echo "make reproduce  regenerate REPRODUCTION.md and the README figures"

install: $(STAMP)

# apt packages: OpenSTA and the OSU 0.18 um cells for the ASIC flow, iproute2 for emulated links
apt:
	@missing=""; for p in $(APT_PKGS); do dpkg-query -W -f='$${Status}' $$p 2>/dev/null \
	  | grep -q "ok installed" || missing="$$missing $$p"; done; \
	if [ -n "$$missing" ]; then \
	  echo "installing apt packages:$$missing"; \
	  SUDO=""; [ "$$(id -u)" -ne 0 ] && SUDO="sudo"; \
	  $$SUDO apt-get update -qq && \
	  DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq --no-install-recommends $$missing; \
	fi

$(STAMP): pyproject.toml
	@$(MAKE) --no-print-directory apt
	@test -x $(PY) || python3 -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e '.[test]'
	$(PY) -m pip check
	@touch $(STAMP)

demo: install
	$(LCP) demo --runs $(RUNS)

test: install
	$(PY) -m pytest -q -n $(JOBS) --dist loadfile

test-slow: install
	$(PY) -m pytest -q -n $(JOBS) --dist loadfile -m slow

bench: install
	$(LCP) bench --runs $(RUNS)

# the demo model (cached run folder; trains it in about 2 minutes when missing)
$(RUNS)/lenet5_split4_w4a4/model.onnx: | install
	$(LCP) train --arch lenet5 --split 4 --weight-bits 4 --act-bits 4 -o $(RUNS)/lenet5_split4_w4a4

IMAGES ?= 1000
sim: install $(MODEL)
	$(LCP) sim-demo $(MODEL) --images $(IMAGES) $(if $(WAVES),--waves,)

PDK ?= osu018
CLOCK_MHZ ?= 100
asic: install $(MODEL)
	$(LCP) compile $(MODEL) -o build/asic_core --budget xc7z020
	$(LCP) synth build/asic_core --asic $(PDK) --clock-mhz $(CLOCK_MHZ) $(if $(PDK_DIR),--pdk-dir $(PDK_DIR),)

reproduce: install
	$(LCP) reproduce --runs $(RUNS) -o REPRODUCTION.md

clean:
	rm -rf build sim_build .pytest_cache

# --- PYNQ overlay (issue 5) --------------------------------------------------------------------
# Writes the Vivado project into build/bitstream/<model>_$(BOARD)/ and builds overlay/*.bit,*.hwh
# when `vivado` is on PATH; without Vivado it exits with code 3 (project written, NOT built) and
# names the command to run where Vivado is installed.
BOARD ?= pynq-z2
bitstream: install $(MODEL)
	$(LCP) bitstream $(MODEL) --board $(BOARD)
