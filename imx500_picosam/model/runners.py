"""Running PicoSAM on ROI crops behind one batched call: a Keras model (float, or MCT's quantized
one) or a TFLite model.

Every consumer -- the camera emulator, the evaluation, still-image ``picosam segment`` --
hands an engine ``uint8`` ROI crops ``(N, 96, 96, 3)``, cut and stretched by the shared
geometry rule as the sensor cuts them, and gets ``(N, 96, 96)`` float32 mask logits back.
The sensor's input scale (RGB / 256) is applied here, once, so no caller can feed the
network another range.

:func:`imx500_picosam.firmware.engines.load_engine` makes one from a checkpoint (the quantized
kinds as ``make rpk`` builds them). TensorFlow is imported when an engine is made, not when this
module is.
"""

from __future__ import annotations

from pathlib import Path
from typing import Optional, Protocol

import numpy as np

from ..errors import PicosamError
from ..geometry import MODEL_INPUT_SIZE, to_model_range


class Engine(Protocol):
    name: str

    def predict_crops(self, crops_uint8: np.ndarray) -> np.ndarray:
        """(N, 96, 96, 3) uint8 ROI crops -> (N, 96, 96) float32 logits."""


class KerasEngine:
    """A Keras model (float, or MCT's quantized one), traced once with ``tf.function``
    (eager calls are ~4x slower per crop)."""

    def __init__(self, model, name: str = "keras"):
        import tensorflow as tf

        self.name = name
        spec = tf.TensorSpec((None, MODEL_INPUT_SIZE, MODEL_INPUT_SIZE, 3), tf.float32)
        self._run = tf.function(lambda batch: model(batch, training=False), input_signature=[spec])

    def predict_crops(self, crops_uint8: np.ndarray) -> np.ndarray:
        return np.asarray(self._run(to_model_range(crops_uint8)))[..., 0].astype(np.float32)


class TfliteEngine:
    """A ``.tflite`` PicoSAM run by ``tf.lite.Interpreter``, one crop per invocation.

    MCT's INT8 export takes and returns float tensors (integer kernels inside); an
    interpreter with integer input or output is quantized and dequantized with its own
    scale and zero point, so any TFLite PicoSAM runs the same way.
    """

    def __init__(self, tflite_path: Path, num_threads: Optional[int] = 1, name: str = "tflite"):
        import tensorflow as tf

        self.name = name
        try:
            self._interpreter = tf.lite.Interpreter(model_path=str(tflite_path), num_threads=num_threads)
            self._interpreter.allocate_tensors()
        except (ValueError, RuntimeError) as err:
            raise PicosamError(f"{tflite_path}: cannot load as a TFLite model ({str(err).splitlines()[0]})") from None
        (self._input,) = self._interpreter.get_input_details()
        (self._output,) = self._interpreter.get_output_details()
        size = MODEL_INPUT_SIZE
        if tuple(self._input["shape"]) != (1, size, size, 3) or tuple(self._output["shape"]) != (1, size, size, 1):
            raise PicosamError(f"{tflite_path}: not a PicoSAM model "
                               f"(input {self._input['shape']}, output {self._output['shape']})")

    def predict_crops(self, crops_uint8: np.ndarray) -> np.ndarray:
        source, target = self._input, self._output
        results = []
        for crop in crops_uint8:
            x = to_model_range(crop[None])
            if source["dtype"] != np.float32:
                scale, zero = source["quantization"]
                limits = np.iinfo(source["dtype"])
                x = np.clip(np.round(x / scale + zero), limits.min, limits.max).astype(source["dtype"])
            self._interpreter.set_tensor(source["index"], x)
            self._interpreter.invoke()
            y = self._interpreter.get_tensor(target["index"])
            if target["dtype"] != np.float32:
                scale, zero = target["quantization"]
                y = (y.astype(np.float32) - zero) * scale
            results.append(y[0, :, :, 0].astype(np.float32))
        return np.stack(results)
