"""Which install profile (pip extra) brings each optional import.

``pip install imx500-picosam`` (with ``[pi]`` on a Raspberry Pi) is the camera side: the
runtime, the RPK tools, packaging and flashing, none of which imports TensorFlow, so a Pi
never downloads the toolchain. Commands that need more import it inside the command; when
it is missing, the CLI turns the ``ModuleNotFoundError`` into one line that names the extra
to install (:func:`missing_extra_error`). The extras themselves are declared in setup.cfg.
"""

from __future__ import annotations

import importlib.util
from typing import Optional

from .errors import PicosamError

# Top-level import name -> the extra whose install brings it ("train" includes "build").
EXTRA_FOR_MODULE = {
    "tensorflow": "build",
    "keras": "build",
    "model_compression_toolkit": "build",
    "mct_quantizers": "build",
    "edgemdt_tpc": "build",
    "edgemdt_cl": "build",
    "imx500_converter": "build",
    "uni": "build",
    "pycocotools": "train",
    "onnxruntime": "train",
    "matplotlib": "train",
}


def install_hint(extra: str) -> str:
    """The command that installs ``extra``, as users should type it."""
    return f"pip install 'imx500-picosam[{extra}]'"


def missing_extra_error(err: ModuleNotFoundError) -> Optional[PicosamError]:
    """A one-line error naming the extra that provides the missing module, or None when the
    module belongs to no extra, or is installed and failed for another reason (a broken
    install should show its real traceback, not advice to install it)."""
    top = (err.name or "").split(".")[0]
    extra = EXTRA_FOR_MODULE.get(top)
    if extra is None or importlib.util.find_spec(top) is not None:
        return None
    what = "the build toolchain" if extra == "build" else f"the '{extra}' extra"
    return PicosamError(f"{top} is not installed; this command needs {what}: {install_hint(extra)}")
