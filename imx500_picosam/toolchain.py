"""What the quantization toolchain is: installed versions and the converter -> TPC table.

The IMX500 converter only understands models quantized for a target platform (TPC) it
knows, so the TPC version follows the installed ``imx500-converter``. Quantization, the
converter stage, build reports and the quantized-model cache all ask here. Ground floor:
imports no stage (``importlib.metadata`` only, no TensorFlow).
"""

from __future__ import annotations

import os
from importlib import metadata
from pathlib import Path
from typing import Dict

# imx500-converter minor version -> edge-mdt-tpc TPC version we quantize with.
# edge-mdt-tpc 1.3.0's own compatibility table tests converters 3.14-3.17 and lists
# TPC 5.0 from converter 3.17 on (Ultralytics pairs 3.17/3.18 with TPC 5.0). Converter
# 3.19 is newer than that table; we verified that 3.19.2 converts TPC 5.0 models of
# PicoSAM3 (tests/test_build.py does so on every CI run).
TPC_FOR_CONVERTER = {"3.17": "5.0", "3.18": "5.0", "3.19": "5.0"}
DEFAULT_TPC_VERSION = "5.0"
# The distributions whose versions change what MCT produces for the same weights.
QUANTIZATION_PACKAGES = ("model-compression-toolkit", "edge-mdt-tpc", "tensorflow", "tensorflow-cpu")
CACHE_ENV = "PICOSAM_CACHE_DIR"


def installed_version(distribution: str) -> str:
    try:
        return metadata.version(distribution)
    except metadata.PackageNotFoundError:
        return "not installed"


def tpc_version_for_converter(converter_version: str) -> str:
    minor = ".".join(converter_version.split(".")[:2])
    return TPC_FOR_CONVERTER.get(minor, DEFAULT_TPC_VERSION)


def converter_tpc_version() -> str:
    """The TPC version matching the installed converter (what ``make rpk`` quantizes with)."""
    return tpc_version_for_converter(installed_version("imx500-converter"))


def quantization_versions() -> Dict[str, str]:
    """Installed versions of everything that shapes a quantized model."""
    return {name: installed_version(name) for name in QUANTIZATION_PACKAGES}


def user_cache_dir() -> Path:
    """Where derived models are kept between runs: $PICOSAM_CACHE_DIR, else the XDG cache."""
    if os.environ.get(CACHE_ENV):
        return Path(os.environ[CACHE_ENV])
    base = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    return base / "imx500-picosam"


def quiet_tensorflow() -> None:
    """Silence TensorFlow's C++ start-up lines (CUDA probes, oneDNN notes) before it is imported.

    The ``picosam`` commands and the Python API (:mod:`imx500_picosam.predictor`) call it;
    a value the user set in ``TF_CPP_MIN_LOG_LEVEL`` is kept.
    """
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
