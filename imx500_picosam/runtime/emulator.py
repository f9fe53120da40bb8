"""The camera emulated on a CPU: frames from an image, a video or a webcam; the quantized
PicoSAM3 runs on the same ROI crop the sensor would make.

The crop is :func:`imx500_picosam.geometry.crop_to_model_input` (the ROI stretched to
96x96, as the sensor stretches it, scaled to [0, 1) as the sensor feeds it) and the network
is the model ``make rpk`` quantizes, run by one of two engines:

* ``tflite`` (default): MCT's INT8 TFLite export, run by ``tf.lite.Interpreter`` -- integer
  kernels, the fastest on a CPU; the export is cached per checkpoint and toolchain, so only
  the first start pays for quantization;
* ``keras``: MCT's quantized Keras model itself (fake-quant ops in float), the reference the
  TFLite export is measured against.

docs/runtime.md gives the measured speed and agreement of both.
"""

from __future__ import annotations

import hashlib
import json
import os
import time
from pathlib import Path
from typing import Callable, Optional, Protocol

import cv2
import numpy as np

from ..errors import PicosamError
from ..geometry import MODEL_INPUT_SIZE, Roi, crop_to_model_input, to_model_range
from ..images import load_image_rgb
from .coords import StreamGeometry
from .session import Capture

ENGINES = ("tflite", "keras")
DEFAULT_ENGINE = "tflite"
CACHE_ENV = "PICOSAM_CACHE_DIR"


class InferenceEngine(Protocol):
    name: str

    def __call__(self, batch: np.ndarray) -> np.ndarray:
        """(1, 96, 96, 3) float32 in [0, 1) -> (96, 96) float32 logits."""


class KerasEngine:
    """MCT's quantized Keras model, traced once with ``tf.function`` (eager calls are ~4x slower)."""

    name = "keras"

    def __init__(self, quantized_model):
        import tensorflow as tf

        spec = tf.TensorSpec((1, MODEL_INPUT_SIZE, MODEL_INPUT_SIZE, 3), tf.float32)
        self._run = tf.function(lambda batch: quantized_model(batch, training=False), input_signature=[spec])

    def __call__(self, batch: np.ndarray) -> np.ndarray:
        return np.asarray(self._run(batch))[0, :, :, 0]


class TfliteEngine:
    """An INT8 ``.tflite`` file run by ``tf.lite.Interpreter``."""

    name = "tflite"

    def __init__(self, tflite_path: Path, num_threads: Optional[int] = 1):
        import tensorflow as tf

        try:
            self._interpreter = tf.lite.Interpreter(model_path=str(tflite_path), num_threads=num_threads)
            self._interpreter.allocate_tensors()
        except (ValueError, RuntimeError) as err:
            raise PicosamError(f"{tflite_path}: cannot load as a TFLite model ({str(err).splitlines()[0]})") from None
        (source,) = self._interpreter.get_input_details()
        (target,) = self._interpreter.get_output_details()
        if tuple(source["shape"]) != (1, 96, 96, 3) or tuple(target["shape"]) != (1, 96, 96, 1):
            raise PicosamError(f"{tflite_path}: not a PicoSAM model (input {source['shape']}, output {target['shape']})")
        self._input, self._output = source["index"], target["index"]

    def __call__(self, batch: np.ndarray) -> np.ndarray:
        self._interpreter.set_tensor(self._input, batch)
        self._interpreter.invoke()
        return self._interpreter.get_tensor(self._output)[0, :, :, 0].copy()


def cache_dir() -> Path:
    """Where quantized emulator models are kept: $PICOSAM_CACHE_DIR, else the XDG cache."""
    if os.environ.get(CACHE_ENV):
        return Path(os.environ[CACHE_ENV])
    base = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    return base / "imx500-picosam"


def emulator_model_path(checkpoint) -> Path:
    """Where the INT8 export of ``checkpoint`` is cached: keyed by the weights, the
    quantization toolchain and the calibration set, so a change to any of them re-quantizes."""
    from ..calibration import DEFAULT_CALIBRATION_DIR
    from ..toolchain import installed_version

    manifest = DEFAULT_CALIBRATION_DIR / "manifest.json"
    facts = {
        "weights_sha256": checkpoint.weights_sha256,
        "architecture": checkpoint.architecture,
        "tpc_version": _tpc_version(),
        "versions": {name: installed_version(name) for name in
                     ("model-compression-toolkit", "edge-mdt-tpc", "tensorflow", "tensorflow-cpu")},
        "calibration_manifest_sha256": hashlib.sha256(manifest.read_bytes()).hexdigest() if manifest.is_file() else None,
    }
    key = hashlib.sha256(json.dumps(facts, sort_keys=True).encode()).hexdigest()
    return cache_dir() / "emulator" / f"{checkpoint.architecture}-{key[:16]}.tflite"


def quantize_for_emulator(checkpoint, log: Callable[[str], None] = print):
    """MCT's quantized Keras model of ``checkpoint``, made exactly as ``make rpk`` makes it
    (same calibration crops, same TPC)."""
    from ..calibration import load_crops
    from ..checkpoint import load_model
    from ..quantize import quantize_model

    tpc_version = _tpc_version()
    log(f"quantizing {checkpoint.describe()} with MCT as `make rpk` does (TPC {tpc_version}, about 20 s) ...")
    return quantize_model(load_model(checkpoint), load_crops("calibration").images, tpc_version=tpc_version)


def load_engine(checkpoint, engine: str = DEFAULT_ENGINE, log: Callable[[str], None] = print):
    """``checkpoint`` quantized and ready to run with ``engine`` ('tflite' reuses a cached export)."""
    if engine not in ENGINES:
        raise PicosamError(f"engine '{engine}' is not one of {ENGINES}")
    tflite_path = emulator_model_path(checkpoint)
    if engine == "tflite" and tflite_path.is_file():
        log(f"emulator model: {tflite_path} (cached INT8 export of {checkpoint.describe()})")
        return TfliteEngine(tflite_path)
    quantized = quantize_for_emulator(checkpoint, log)
    if engine == "keras":
        return KerasEngine(quantized)
    from ..quantize import export_int8_tflite

    log(f"exporting the INT8 TFLite model to {tflite_path} ...")
    export_int8_tflite(quantized, tflite_path)
    return TfliteEngine(tflite_path)


def _tpc_version() -> str:
    from ..toolchain import installed_version, tpc_version_for_converter

    return tpc_version_for_converter(installed_version("imx500-converter"))


# -- frame sources -------------------------------------------------------------------------

class FrameSource:
    """Frames as BGR uint8 arrays; ``kind`` is 'image', 'video' or 'camera'."""

    kind = "image"
    description = ""

    def read(self) -> Optional[np.ndarray]:
        raise NotImplementedError

    def size(self) -> tuple:
        raise NotImplementedError

    def close(self) -> None:
        pass


class ImageSource(FrameSource):
    """A still photograph, delivered as a fresh copy every frame."""

    kind = "image"

    def __init__(self, path: Path):
        self.description = str(path)
        self._image = cv2.cvtColor(load_image_rgb(path), cv2.COLOR_RGB2BGR)

    def read(self) -> Optional[np.ndarray]:
        return self._image.copy()

    def size(self) -> tuple:
        return (self._image.shape[1], self._image.shape[0])


class VideoSource(FrameSource):
    """A video file (optionally looping) or a webcam, through ``cv2.VideoCapture``."""

    def __init__(self, target, kind: str, loop: bool = False):
        self.kind, self.description, self._loop = kind, str(target), loop
        self._capture = cv2.VideoCapture(target)
        ok, frame = self._capture.read() if self._capture.isOpened() else (False, None)
        if not ok:
            self._capture.release()
            if kind == "camera":
                raise PicosamError(f"camera {target}: cannot open it or read a frame (is a webcam connected?)")
            raise PicosamError(f"{target}: cannot read it as an image or a video")
        self._pending: Optional[np.ndarray] = frame

    def read(self) -> Optional[np.ndarray]:
        if self._pending is not None:
            frame, self._pending = self._pending, None
            return frame
        ok, frame = self._capture.read()
        if not ok and self._loop and self.kind == "video":
            self._capture.set(cv2.CAP_PROP_POS_FRAMES, 0)
            ok, frame = self._capture.read()
        return frame if ok else None

    def size(self) -> tuple:
        frame = self._pending
        if frame is not None:
            return (frame.shape[1], frame.shape[0])
        return (int(self._capture.get(cv2.CAP_PROP_FRAME_WIDTH)), int(self._capture.get(cv2.CAP_PROP_FRAME_HEIGHT)))

    def close(self) -> None:
        self._capture.release()


def open_source(spec: str, loop: bool = False) -> FrameSource:
    """``IMAGE``, ``VIDEO`` or a webcam index such as ``0``."""
    if spec.isdigit():
        return VideoSource(int(spec), "camera")
    path = Path(spec)
    if not path.is_file():
        raise PicosamError(f"{spec}: no such file (give an image, a video or a webcam index such as 0)")
    if cv2.haveImageReader(str(path)):
        return ImageSource(path)
    return VideoSource(str(path), "video", loop=loop)


# -- the backend ---------------------------------------------------------------------------

class EmulatorBackend:
    """Frames from ``source``; the network answers for the ROI of every frame."""

    name = "emulator"

    def __init__(self, source: FrameSource, engine: InferenceEngine):
        self.source = source
        self.engine = engine
        self.is_still = source.kind == "image"
        self._geometry: Optional[StreamGeometry] = None
        self._roi: Optional[Roi] = None
        self._index = 0

    def start(self) -> StreamGeometry:
        width, height = self.source.size()
        self._geometry = StreamGeometry.identity(width, height)
        return self._geometry

    def set_roi(self, roi: Roi) -> None:
        self._roi = roi

    def capture(self) -> Optional[Capture]:
        if self._geometry is None or self._roi is None:
            raise PicosamError("emulator: start() and set_roi() come before capture()")
        frame = self.source.read()
        if frame is None:
            return None
        if (frame.shape[1], frame.shape[0]) != self._geometry.main_size:
            raise PicosamError(
                f"{self.source.description}: frame {self._index} is {frame.shape[1]}x{frame.shape[0]}, "
                f"the first was {self._geometry.main_size[0]}x{self._geometry.main_size[1]}"
            )
        started = time.perf_counter()
        # The sensor's job: cut the ROI, stretch it to 96x96, feed RGB / 256.
        crop = crop_to_model_input(frame[:, :, ::-1], self._roi)
        batch = to_model_range(crop)[None]
        inference_started = time.perf_counter()
        logits = self.engine(batch)
        finished = time.perf_counter()
        capture = Capture(
            index=self._index, image=frame, geometry=self._geometry, roi=self._roi, logits=logits,
            dnn_runtime_ms=(finished - inference_started) * 1000.0, dsp_runtime_ms=None,
            host_ms=(finished - started) * 1000.0,
        )
        self._index += 1
        return capture

    def close(self) -> None:
        self.source.close()
