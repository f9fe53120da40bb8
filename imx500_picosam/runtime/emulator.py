"""The camera emulated on a CPU: frames from an image, a video or a webcam; the quantized
PicoSAM3 runs on the same ROI crop the sensor would make.

The crop is :func:`imx500_picosam.geometry.crop_to_model_input` (the ROI stretched to
96x96, as the sensor stretches it) and the network is an :mod:`imx500_picosam.firmware.engines`
engine, normally the model ``make rpk`` quantizes (see :mod:`.backends` for how ``picosam
demo --emulate`` picks it). docs/runtime.md gives the measured speed and agreement of the
engines.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Optional

import cv2
import numpy as np

from ..errors import PicosamError
from ..model.runners import Engine
from ..geometry import LEGACY_ROI_RULE, Roi, check_rule, crop_to_model_input
from ..images import load_image_rgb
from .coords import StreamGeometry
from .session import Capture

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
    """Frames from ``source``; the network answers for the ROI of every frame.

    ``roi_latency`` (frames, or ``(low, high)`` drawn per ROI change from a generator seeded
    with ``seed``) emulates the sensor's lag in taking a new ROI: the network keeps running
    on the previous ROI until then, and -- like the camera -- the backend does not say which
    ROI a frame used; it hands over the picture the network saw (``Capture.input_image``)
    and the session attributes the frame. Without latency the ROI is known exactly.
    """

    name = "emulator"
    roi_knowledge = "exact"

    def __init__(self, source: FrameSource, engine: Engine, roi_latency=0, seed: int = 0,
                 roi_rule: str = LEGACY_ROI_RULE):
        """``roi_rule`` is the engine's model's ROI rule (:func:`.backends.emulator_backend` passes
        the checkpoint's); a bare engine is taken to be the authors' ``square``."""
        self.source = source
        self.engine = engine
        self.roi_rule = check_rule(roi_rule)
        self.is_still = source.kind == "image"
        low, high = roi_latency if isinstance(roi_latency, tuple) else (roi_latency, roi_latency)
        if not 0 <= low <= high:
            raise PicosamError(f"roi_latency {roi_latency}: expected frames >= 0 or (low, high) with low <= high")
        self._latency = (int(low), int(high))
        self._rng = np.random.default_rng(seed)
        self._geometry: Optional[StreamGeometry] = None
        self._roi: Optional[Roi] = None  # the ROI the network runs on
        self._pending: list = []  # (frame it takes effect, ROI), in request order
        self._index = 0

    @property
    def lags(self) -> bool:
        return self._latency != (0, 0)

    def start(self) -> StreamGeometry:
        width, height = self.source.size()
        self._geometry = StreamGeometry.identity(width, height)
        return self._geometry

    def set_roi(self, roi: Roi) -> None:
        requested = self._pending[-1][1] if self._pending else self._roi
        if roi == requested:
            return
        if self._roi is None or not self.lags:
            self._roi, self._pending = roi, []
            return
        latency = int(self._rng.integers(self._latency[0], self._latency[1] + 1))
        due = max([self._index + latency] + [frame for frame, _ in self._pending])
        self._pending.append((due, roi))

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
        while self._pending and self._pending[0][0] <= self._index:
            self._roi = self._pending.pop(0)[1]
        started = time.perf_counter()
        # The sensor's job: cut the ROI and stretch it to 96x96 (the engine feeds RGB / 256).
        crop = crop_to_model_input(frame[:, :, ::-1], self._roi)
        inference_started = time.perf_counter()
        logits = self.engine.predict_crops(crop[None])[0]
        finished = time.perf_counter()
        capture = Capture(
            index=self._index, image=frame, geometry=self._geometry, roi=None if self.lags else self._roi,
            logits=logits, input_image=crop if self.lags else None,
            dnn_runtime_ms=(finished - inference_started) * 1000.0, dsp_runtime_ms=None,
            host_ms=(finished - started) * 1000.0,
        )
        self._index += 1
        return capture

    def close(self) -> None:
        self.source.close()
