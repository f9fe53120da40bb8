# imx500-picosam: `make rpk` sets everything up and builds the sensor firmware,
# `make test` runs the tests. Both create .venv on first use.

PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV ?= .venv
BIN := $(VENV)/bin
BUILD ?= build
CHECKPOINT ?=
GPTQ ?=
INFERENCE_RATE ?= 30
# make package ROI_RULE=warp|square: the model's ROI rule where no build_report.json lies in BUILD.
ROI_RULE ?=
PACKER_OUT ?= $(BUILD)/packerOut.zip
PYTEST_ARGS ?=
# The PyTorch reference that tests/test_import_weights.py compares the import against runs
# in its own venv: torch in .venv would break MCT (edge-mdt-cl then wants torchvision, which
# has no CPU build). The exact CPU build, so pip never reaches for the CUDA packages.
TORCH_VENV ?= .venv-torch
TORCH_SPEC ?= torch==2.13.0+cpu

# make flash PI=USER@PI: the Raspberry Pi to deploy to over SSH, and optionally its port,
# key, known_hosts file, folder, and any other `picosam flash` options.
PI ?=
PI_PORT ?=
PI_IDENTITY ?=
PI_KNOWN_HOSTS ?=
PI_DIR ?=
FLASH_ARGS ?=

.PHONY: setup torch-reference rpk package flash test clean

setup: $(VENV)/.installed

$(VENV)/.installed: setup.cfg pyproject.toml
	@$(PYTHON) -c 'import sys; sys.exit(0 if (3, 10) <= sys.version_info[:2] < (3, 12) else 1)' || \
	  { echo "error: the IMX500 toolchain needs Python 3.10 or 3.11 (found $$($(PYTHON) --version)); set PYTHON=python3.11" >&2; exit 1; }
	@sh .ci/ensure-java
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	@# The base install is the Pi's (no TensorFlow); the toolchain and training are extras.
	$(BIN)/python -m pip install --quiet -e '.[build,train,dev]'
	@# LVIS's reader. Its metadata asks for opencv-python (the GUI build), which would
	@# overwrite opencv-python-headless's cv2; it works with the headless one.
	$(BIN)/python -m pip install --quiet --no-deps lvis==0.5.3
	@touch $@

torch-reference: $(TORCH_VENV)/.installed

$(TORCH_VENV)/.installed:
	$(PYTHON) -m venv $(TORCH_VENV)
	$(TORCH_VENV)/bin/python -m pip install --quiet '$(TORCH_SPEC)' numpy
	@touch $@

rpk: setup
	$(BIN)/picosam build --build $(BUILD) --inference-rate $(INFERENCE_RATE) \
	  $(if $(CHECKPOINT),--checkpoint $(CHECKPOINT)) $(if $(GPTQ),--gptq)

# On a Raspberry Pi (imx500-tools installed): packerOut.zip -> network.rpk with intrinsics.
# Like flash, it needs no toolchain, so a Pi never installs TensorFlow for it.
package: $(BIN)/picosam
	$(BIN)/picosam package --packer-out $(PACKER_OUT) --build $(BUILD) --inference-rate $(INFERENCE_RATE) \
	  $(if $(ROI_RULE),--roi-rule $(ROI_RULE))

# Deploy $(BUILD) to a Raspberry Pi over SSH: package there, smoke-test on the sensor,
# switch current.rpk. Needs only this project and click, not the toolchain, so it reuses
# .venv when `make setup` made it and otherwise installs just that (CI runners, Pis).
flash: $(BIN)/picosam
	@test -n "$(PI)" || { echo "error: say which Pi: make flash PI=USER@PI (e.g. PI=pi@raspberrypi.local)" >&2; exit 2; }
	$(BIN)/picosam flash --host $(PI) --build $(BUILD) --inference-rate $(INFERENCE_RATE) \
	  $(if $(PI_PORT),--port $(PI_PORT)) $(if $(PI_IDENTITY),--identity $(PI_IDENTITY)) \
	  $(if $(PI_KNOWN_HOSTS),--known-hosts $(PI_KNOWN_HOSTS)) $(if $(PI_DIR),--remote-dir $(PI_DIR)) $(FLASH_ARGS)

$(BIN)/picosam:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet click
	$(BIN)/python -m pip install --quiet --no-deps -e .

test: setup torch-reference
	PICOSAM_TORCH_PYTHON=$(abspath $(TORCH_VENV))/bin/python $(BIN)/python -m pytest $(PYTEST_ARGS)

clean:
	rm -rf $(BUILD)
