"""A checkpoint ready to run: the float Keras model, MCT's quantized Keras model, or MCT's
INT8 TFLite export, as one of :mod:`imx500_picosam.model.runners`' engines.

The quantized kinds go through :func:`~imx500_picosam.firmware.quantize.quantized_as_built`,
i.e. the network ``make rpk`` builds, which is why this lives with the firmware stage.
TensorFlow is imported when an engine is made, not when this module is.
"""

from __future__ import annotations

from typing import Callable, Optional

from ..errors import PicosamError
from ..model.checkpoint import load_model
from ..model.runners import Engine, KerasEngine, TfliteEngine
from .quantize import QuantizationSettings, int8_tflite_as_built, quantized_as_built

ENGINE_KINDS = ("float", "quantized", "tflite")


def load_engine(checkpoint, kind: str, log: Optional[Callable[[str], None]] = None, num_threads: Optional[int] = 1,
                settings=None) -> Engine:
    """``checkpoint`` ready to run as ``kind``: ``float`` (the Keras model as trained),
    ``quantized`` (MCT's model, as ``make rpk`` quantizes it) or ``tflite`` (MCT's INT8
    TFLite export of that model). The quantized kinds come from the on-disk cache after the
    first time; ``settings`` (a :class:`~imx500_picosam.firmware.quantize.QuantizationSettings`)
    defaults to ``make rpk``'s."""
    settings = settings or QuantizationSettings()
    if kind == "float":
        return KerasEngine(load_model(checkpoint), name="float")
    if kind == "quantized":
        return KerasEngine(quantized_as_built(checkpoint, settings, log=log).model, name="quantized")
    if kind == "tflite":
        return TfliteEngine(int8_tflite_as_built(checkpoint, settings, log=log), num_threads=num_threads)
    raise PicosamError(f"engine '{kind}' is not one of {ENGINE_KINDS}")
