# imx500-picosam: `make rpk` sets everything up and builds the sensor firmware,
# `make test` runs the tests. Both create .venv on first use.

PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV ?= .venv
BIN := $(VENV)/bin
BUILD ?= build
CHECKPOINT ?=
GPTQ ?=
INFERENCE_RATE ?= 30
PACKER_OUT ?= $(BUILD)/packerOut.zip
PYTEST_ARGS ?=

.PHONY: setup rpk package test clean

setup: $(VENV)/.installed

$(VENV)/.installed: setup.cfg pyproject.toml
	@$(PYTHON) -c 'import sys; sys.exit(0 if (3, 10) <= sys.version_info[:2] < (3, 12) else 1)' || \
	  { echo "error: the IMX500 toolchain needs Python 3.10 or 3.11 (found $$($(PYTHON) --version)); set PYTHON=python3.11" >&2; exit 1; }
	@sh .ci/ensure-java
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	@touch $@

rpk: setup
	$(BIN)/picosam build --out $(BUILD) --inference-rate $(INFERENCE_RATE) \
	  $(if $(CHECKPOINT),--checkpoint $(CHECKPOINT)) $(if $(GPTQ),--gptq)

# On a Raspberry Pi (imx500-tools installed): packerOut.zip -> network.rpk with intrinsics.
package: setup
	$(BIN)/picosam package --packer-out $(PACKER_OUT) --out $(BUILD) --inference-rate $(INFERENCE_RATE)

test: setup
	$(BIN)/python -m pytest $(PYTEST_ARGS)

clean:
	rm -rf $(BUILD)
