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


# -- picamera2: apt's, beside this package ------------------------------------------------------

PICAMERA2_INSTALL = ("sudo apt install imx500-all python3-picamera2; pip install 'imx500-picosam[pi]' in a venv "
                     "made with --system-site-packages")
# What a numpy-1 build of apt's modules (simplejpeg, picamera2's JPEG path) says under numpy 2
# (picamera2#1211, #1088), as a ValueError, an ImportError or an AttributeError.
NUMPY_ABI_CLASH_MARKERS = ("numpy.dtype size changed", "numpy.core.multiarray failed to import",
                           "compiled using NumPy 1.x cannot be run in", "_ARRAY_API not found")
NUMPY_ABI_FIX = ("pip uninstall -y numpy (keep apt's python3-numpy), then reinstall imx500-picosam[pi] in this "
                 "venv")
PICAMERA2_REINSTALL = "sudo apt install --reinstall python3-picamera2 python3-libcamera"


def is_numpy_abi_clash(text: str) -> bool:
    """Whether an import failure's text is a numpy-1 extension module meeting numpy 2."""
    return any(marker in text for marker in NUMPY_ABI_CLASH_MARKERS)


def picamera2_import_error(err: BaseException, needed_for: str, elsewhere: str = "") -> PicosamError:
    """Any failure of ``import picamera2`` (not only ImportError) as one line with its fix."""
    text = " ".join(str(err).split()) or type(err).__name__
    module = (getattr(err, "name", None) or "").split(".")[0]
    missing = isinstance(err, ModuleNotFoundError) and module in ("picamera2", "libcamera", "Imath", "OpenEXR")
    if is_numpy_abi_clash(text):
        try:
            from importlib.metadata import version

            numpy_version = version("numpy")
        except Exception:  # noqa: BLE001 - only for the message
            numpy_version = "?"
        return PicosamError(
            f"picamera2 is installed but its import fails ({type(err).__name__}: {text[:160]}): numpy "
            f"{numpy_version} in this environment shadows the numpy apt's picamera2 was built against; "
            f"fix: {NUMPY_ABI_FIX}")
    if missing:
        what = "picamera2" if module in ("picamera2", "libcamera") else f"{module} (for picamera2's tensor injection)"
        return PicosamError(f"{what} is not available ({text}): {needed_for} runs on Raspberry Pi OS "
                            f"({PICAMERA2_INSTALL}){elsewhere}")
    return PicosamError(f"picamera2 is installed but its import fails ({type(err).__name__}: {text[:160]}): "
                        f"fix: {PICAMERA2_REINSTALL}, and make the venv with --system-site-packages")
