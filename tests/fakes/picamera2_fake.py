"""A stand-in for picamera2 and the IMX500 at the hardware boundary, for tests.

It produces what picamera2 documents and nothing more convenient:

* ``CnnOutputTensor``: the network output as a flat sequence of float32 values, serialised
  the way libcamera's IMX500 tensor parser emits it -- the first listed dimension varies
  fastest -- so that picamera2's ``get_outputs`` (``reshape(dims, order='F')``) yields
  ``[row, column, channel]``;
* ``CnnOutputTensorInfo``: the bytes of libcamera's ``CnnOutputTensorInfoExported`` ctypes
  struct (name[64], num_tensors, 16 x {tensor_data_num, num_dimensions, size[16] u16},
  frameCount u8), dimensions listed (height, width, channels);
* ``CnnKpiInfo``: (DNN runtime, DSP runtime) in microseconds;
* ``ScalerCrop``: (x, y, width, height) of the sensor area the main stream shows;
* ``CnnInputTensor`` (with input persistency, once ``CnnEnableInputTensor`` is set): the
  bytes the network saw, planar in the RPK's ``inputTensorFormat`` order, quantized as its
  ``inputTensorNorm`` registers say (signed int8 for the converter's default), 3*H*W values
  with no padding, handed over as libcamera's Python binding hands an array control over: a
  tuple of ints, not ``bytes`` (picamera2's ``np.array(input_tensor, dtype=np.uint8)`` rejects
  bytes, and so does the fake's); ``FakeIMX500.input_tensor_image`` turns it back into an
  HxWx3 image in picamera2's channel order (B, G, R for an RGB network) with picamera2's
  arithmetic: the offset registers (``norm_val``) are read from the RPK, but the divisor
  registers are not -- picamera2's defaults test ``'div_val' not in self.__cfg`` (the outer
  dict, where it never is), so ``div_val`` is always [1024, 1024, 1024] and ``div_shift`` 6
  (picamera2 0.3.22 to 0.3.36, picamera2/devices/imx500/imx500.py).

``FakeIMX500`` restates the documented behaviour of picamera2's ``IMX500`` helpers
(``get_outputs``, ``get_kpi_info``, ``get_roi_scaled``, ``set_inference_roi_abs``) in its
own way, so the project's code is checked against an independent reading. The simulated
sensor crops the ROI from a scene, stretches it to 96x96, runs a network on it and applies
an ROI change ``roi_latency`` frames after it was requested, as a real pipeline lags: a
fixed number, or ``(low, high)`` drawn per request from a seeded generator (an ROI is never
applied before one requested earlier). ``faults`` ({sensor frame: kind}) breaks the stream at
that frame until the camera is restarted, for the watchdog: ``stall`` (no request arrives:
``capture_request(wait=...)`` times out, as after rpicam-apps#927's "Dequeue timer ...
expired"), ``error`` (picamera2 raises a RuntimeError), ``reload`` (the firmware reloads in
a loop: frames keep coming, without output tensors, libcamera#355).
"""

from __future__ import annotations

import concurrent.futures
import ctypes
import os
from dataclasses import dataclass, field
from pathlib import Path
from types import SimpleNamespace
from typing import Callable, List, Optional, Tuple

import cv2
import numpy as np

NETWORK_NAME_LEN = 64
MAX_NUM_TENSORS = 16
MAX_NUM_DIMENSIONS = 16
FULL_SENSOR = (4056, 3040)


class OutputTensorInfo(ctypes.LittleEndianStructure):
    _fields_ = [
        ("tensor_data_num", ctypes.c_uint32),
        ("num_dimensions", ctypes.c_uint32),
        ("size", ctypes.c_uint16 * MAX_NUM_DIMENSIONS),
    ]


class CnnOutputTensorInfoExported(ctypes.LittleEndianStructure):
    _fields_ = [
        ("network_name", ctypes.c_char * NETWORK_NAME_LEN),
        ("num_tensors", ctypes.c_uint32),
        ("info", OutputTensorInfo * MAX_NUM_TENSORS),
        ("frameCount", ctypes.c_uint8),
    ]


def tensor_info_bytes(name: str, dims: List[Tuple[int, ...]], frame_count: int = 0) -> bytes:
    info = CnnOutputTensorInfoExported()
    info.network_name = name.encode()
    info.num_tensors = len(dims)
    for slot, shape in zip(info.info, dims):
        slot.tensor_data_num = int(np.prod(shape))
        slot.num_dimensions = len(shape)
        for axis, size in enumerate(shape):
            slot.size[axis] = size
    info.frameCount = frame_count % 256
    return bytes(info)


def serialise_like_the_sensor(tensor: np.ndarray) -> Tuple[float, ...]:
    """(H, W, C) -> flat float32 values, first dimension fastest (libcamera's order)."""
    return tuple(np.asarray(tensor, dtype=np.float32).flatten(order="F").tolist())


def get_output_shapes(metadata) -> List[List[int]]:
    """picamera2 ``IMX500.get_output_shapes``: the dimensions listed in the tensor info struct."""
    raw = metadata.get("CnnOutputTensorInfo")
    if not raw:
        return []
    raw = bytes(raw)
    assert len(raw) == ctypes.sizeof(CnnOutputTensorInfoExported)
    parsed = CnnOutputTensorInfoExported.from_buffer_copy(raw)
    return [list(t.size)[: t.num_dimensions] for t in parsed.info[: parsed.num_tensors]]


def get_outputs(metadata, add_batch=False) -> Optional[List[np.ndarray]]:
    """picamera2 ``IMX500.get_outputs``: the flat floats cut per tensor, each reshaped in Fortran order."""
    flat = metadata.get("CnnOutputTensor")
    if not flat:
        return None
    values = np.fromiter(flat, dtype=np.float32)
    outputs, offset = [], 0
    for shape in get_output_shapes(metadata):
        count = int(np.prod(shape))
        tensor = values[offset : offset + count].reshape(shape, order="F")
        outputs.append(tensor[None] if add_batch else tensor)
        offset += count
    return outputs


def get_kpi_info(metadata) -> Optional[Tuple[float, float]]:
    """picamera2 ``IMX500.get_kpi_info``: (DNN runtime, DSP runtime) in milliseconds."""
    kpi = metadata.get("CnnKpiInfo")
    return None if kpi is None else (kpi[0] / 1000, kpi[1] / 1000)


class Rect:
    """libcamera's Rectangle arithmetic, restated from its documentation."""

    def __init__(self, x, y, width, height):
        self.x, self.y, self.width, self.height = int(x), int(y), int(width), int(height)

    def scaled_by(self, numerator, denominator) -> "Rect":
        def ratio(value, num, den):  # C++ 64-bit integer division truncates towards zero
            return int(value * num / den)

        return Rect(ratio(self.x, numerator[0], denominator[0]), ratio(self.y, numerator[1], denominator[1]),
                    ratio(self.width, numerator[0], denominator[0]), ratio(self.height, numerator[1], denominator[1]))

    def bounded_to(self, other: "Rect") -> "Rect":
        left, top = max(self.x, other.x), max(self.y, other.y)
        right = min(self.x + self.width, other.x + other.width)
        bottom = min(self.y + self.height, other.y + other.height)
        return Rect(left, top, max(right - left, 0), max(bottom - top, 0))

    def translated_by(self, dx, dy) -> "Rect":
        return Rect(self.x + dx, self.y + dy, self.width, self.height)

    def to_tuple(self):
        return (self.x, self.y, self.width, self.height)


def fake_roi_scaled(roi, scaler_crop, raw_size, main_size):
    """picamera2 ``IMX500.get_roi_scaled``, step by step as documented there."""
    full = Rect(0, 0, *FULL_SENSOR)
    crop_in_raw = Rect(*scaler_crop).scaled_by(raw_size, FULL_SENSOR)
    obj = full.bounded_to(Rect(*roi))
    obj = obj.scaled_by(raw_size, FULL_SENSOR).bounded_to(crop_in_raw)
    obj = obj.translated_by(-crop_in_raw.x, -crop_in_raw.y)
    return obj.scaled_by(main_size, (crop_in_raw.width, crop_in_raw.height)).to_tuple()


@dataclass
class FakeSensor:
    """The IMX500 with a scene in front of it.

    ``scene`` (BGR) covers the whole pixel array at any resolution; ``network`` maps the
    96x96 RGB uint8 input tensor to (96, 96) float32 logits.
    """

    scene: np.ndarray
    network: Callable[[np.ndarray], np.ndarray]
    scaler_crop: Tuple[int, int, int, int] = (0, 0, 4056, 3040)
    raw_size: Tuple[int, int] = (2028, 1520)
    roi_latency: object = 1  # frames, or (low, high) inclusive, drawn per ROI request
    seed: int = 0
    input_persistency: bool = True
    loading_frames: int = 0  # frames without an output tensor while the firmware starts
    dnn_runtime_us: int = 8_700
    dsp_runtime_us: int = 1_100
    network_name: str = "picosam3"
    frame: int = 0
    active_roi: Tuple[int, int, int, int] = (0, 0, 4056, 3040)
    pending: List[Tuple[int, Tuple[int, int, int, int]]] = field(default_factory=list)
    inputs: List[np.ndarray] = field(default_factory=list)  # what the network saw, per frame
    outputs: List[np.ndarray] = field(default_factory=list)
    rois: List[Tuple[int, int, int, int]] = field(default_factory=list)
    latencies: List[int] = field(default_factory=list)  # the true latency of each ROI request
    input_tensor_enabled: bool = False  # the CnnEnableInputTensor control
    faults: dict = field(default_factory=dict)  # {sensor frame: "stall" | "error" | "reload"}
    fault: Optional[str] = None  # the fault in force until the next start
    started_at: int = 0  # sensor frame of the last start (the firmware loads for loading_frames)
    # Tensor injection (IMX500(..., tensor_injection=True)): the network runs on the injected
    # tensor from ``injection_latency`` frames after it was set; ``injection_faults``
    # {injection number: "drop" | "late"} loses one or applies it a frame after the
    # comparison frame the driver announced, the frame-count mismatches callers must retry.
    injection_enabled: bool = False
    injection_latency: int = 2
    injection_faults: dict = field(default_factory=dict)
    injections: int = 0
    injected: Optional[np.ndarray] = None  # RGB uint8, what the network now runs on
    pending_injection: Optional[Tuple[int, np.ndarray]] = None
    input_format: str = "RGB"
    input_signed: bool = True

    def __post_init__(self):
        self._rng = np.random.default_rng(self.seed)

    def request_roi(self, roi) -> None:
        if isinstance(self.roi_latency, tuple):
            latency = int(self._rng.integers(self.roi_latency[0], self.roi_latency[1] + 1))
        else:
            latency = int(self.roi_latency)
        apply_at = max([self.frame + latency] + [frame for frame, _ in self.pending])
        self.latencies.append(apply_at - self.frame)
        self.pending.append((apply_at, tuple(roi)))

    def inject(self, planar: bytes, width: int, height: int) -> int:
        """The driver's side of the input-tensor fd: unpad, de-plane, undo the int8 shift;
        returns the comparison frame count (the frame whose output will carry it)."""
        padded_w, padded_h = (width + 31) // 32 * 32, (height + 1) // 2 * 2
        planes = np.frombuffer(planar, dtype=np.uint8).reshape(3, padded_h, padded_w)[:, :height, :width]
        if self.input_format == "BGR":
            planes = planes[::-1]
        values = planes.astype(np.int32)
        if self.input_signed:
            values = (values + 128) & 0xFF
        tensor = np.ascontiguousarray(np.moveaxis(values, 0, -1)).astype(np.uint8)
        self.injections += 1
        due = self.frame + self.injection_latency
        fault = self.injection_faults.get(self.injections)
        if fault != "drop":
            self.pending_injection = (due + (1 if fault == "late" else 0), tensor)
        return due % 256

    def check_fault(self) -> None:
        kind = self.faults.pop(self.frame, None)
        if kind is not None:
            self.fault = kind
        if self.fault == "stall":
            raise concurrent.futures.TimeoutError()
        if self.fault == "error":
            raise RuntimeError("Dequeue timer of 1000000.00us has expired!")

    def input_tensor_bytes(self, tensor_rgb: np.ndarray) -> bytes:
        """What libcamera puts in ``CnnInputTensor``: planes in the network's order, quantized."""
        order = (0, 1, 2) if self.input_format == "RGB" else (2, 1, 0)
        planes = np.transpose(tensor_rgb, (2, 0, 1))[list(order)].astype(np.int32)
        if self.input_signed:
            planes = (planes - 128) & 0xFF  # int8 two's complement in a byte
        return planes.astype(np.uint8).tobytes()

    def _scene_rect(self, rect):
        sx = self.scene.shape[1] / FULL_SENSOR[0]
        sy = self.scene.shape[0] / FULL_SENSOR[1]
        x, y, w, h = rect
        return self.scene[int(round(y * sy)) : int(round((y + h) * sy)), int(round(x * sx)) : int(round((x + w) * sx))]

    def next_frame(self, main_size) -> Tuple[np.ndarray, dict]:
        while self.pending and self.pending[0][0] <= self.frame:
            self.active_roi = self.pending.pop(0)[1]
        key = (tuple(self.scaler_crop), tuple(main_size))
        if getattr(self, "_main_key", None) != key:  # the scene is still: resize it once
            self._main_key = key
            self._main = cv2.resize(self._scene_rect(self.scaler_crop), tuple(main_size), interpolation=cv2.INTER_AREA)
        main = self._main
        metadata = {"ScalerCrop": tuple(self.scaler_crop), "SensorTimestamp": self.frame * 33_333_000}
        running = self.frame - self.started_at >= self.loading_frames and self.fault != "reload"
        self.rois.append(self.active_roi if running else None)  # per sensor frame: the ROI inferred on
        if self.pending_injection is not None and self.pending_injection[0] <= self.frame:
            self.injected, self.pending_injection = self.pending_injection[1], None
        if running:
            if self.injection_enabled and self.injected is not None:
                tensor_input = self.injected
            else:
                patch = self._scene_rect(self.active_roi)
                tensor_input = cv2.cvtColor(cv2.resize(patch, (96, 96), interpolation=cv2.INTER_AREA), cv2.COLOR_BGR2RGB)
            logits = np.asarray(self.network(tensor_input), dtype=np.float32).reshape(96, 96)
            self.inputs.append(tensor_input)
            self.outputs.append(logits)
            metadata["CnnOutputTensor"] = serialise_like_the_sensor(logits[:, :, None])
            metadata["CnnOutputTensorInfo"] = tensor_info_bytes(self.network_name, [(96, 96, 1)], self.frame)
            metadata["CnnKpiInfo"] = (self.dnn_runtime_us, self.dsp_runtime_us)
            if self.input_persistency and self.input_tensor_enabled:
                metadata["CnnInputTensor"] = tuple(self.input_tensor_bytes(tensor_input))  # libcamera: ints
        self.frame += 1
        return main, metadata


class FakeCompletedRequest:
    def __init__(self, picam2, main: np.ndarray, metadata: dict):
        self.picam2 = picam2
        self._main, self._metadata = main, metadata
        self.released = False

    def make_array(self, name: str) -> np.ndarray:
        assert name == "main" and not self.released
        return self._main.copy()

    def get_metadata(self) -> dict:
        return dict(self._metadata)

    def release(self) -> None:
        self.released = True


def make_picamera2(sensor: FakeSensor, camera_present: bool = True, injection_overlay: bool = True,
                   camera_listed: bool = True, cmp_frm_readable: bool = True, tensor_fd_accepted: bool = True):
    """An object with ``Picamera2`` and ``IMX500`` as picamera2 provides them (and the
    ``OpenEXR`` / ``Imath`` modules its tensor injection takes). Without
    ``injection_overlay`` (no ``dtoverlay=imx500,...,bypass-cache``) the driver refuses to
    enable injection, as picamera2 reports it. The other failures, each as picamera2 0.3.36
    shows it:

    * not ``camera_listed``: the imx500 v4l-subdev exists but libcamera does not list the
      camera: ``IMX500()``'s ``next(...)`` over ``global_camera_info()`` raises a bare
      StopIteration, and ``Picamera2(n)`` an IndexError (``global_camera_info()[n]``);
    * not ``cmp_frm_readable``: ``get_injection_cmp_frm()``'s ioctl fails: it prints the error
      and returns 0;
    * not ``tensor_fd_accepted``: ``__set_input_tensor(fd)``'s ioctl fails: RuntimeError
      "IMX500: Unable to set input tensor fd: ..."."""
    log = SimpleNamespace(progress_bar_shown=False, roi_calls=[], started=False, closed=False, starts=0,
                          networks_loaded=0, waits=[], request_frames=[], last_roi_set=[], injected_fds=[])

    class FakeIMX500:
        def __init__(self, network_file: str, camera_id: str = "", tensor_injection: bool = False):
            from firmware_packaging.rpk import read_rpk

            if not camera_present:
                raise RuntimeError("IMX500: Requested camera dev-node not found")
            if not camera_listed:
                raise StopIteration  # next(c['Num'] for c in Picamera2.global_camera_info() if ...)
            if not Path(network_file).is_file():
                raise RuntimeError(f"Firmware file {network_file} does not exist.")
            if tensor_injection and not injection_overlay:
                raise RuntimeError("IMX500: Unable to enable input tensor injection: [Errno 22] Invalid argument")
            sensor.injection_enabled = tensor_injection
            log.networks_loaded += 1
            from firmware_packaging.rpk import summarize

            package = read_rpk(network_file)
            facts = summarize(package)["input_tensor"]
            self.config = {
                "network_file": network_file,
                "input_tensor_size": (int(package.network_info["inputTensorWidth"]),
                                      int(package.network_info["inputTensorHeight"])),
                "input_tensor": {"width": facts["width"], "height": facts["height"],
                                 "input_format": facts["format"], "dtype": facts["dtype"],
                                 # picamera2 reads the offsets but resets the divisors (see above)
                                 "norm_val": facts["norm_val"], "norm_shift": [4, 4, 4],
                                 "div_val": [1024, 1024, 1024], "div_shift": 6},
            }
            sensor.input_format = facts["format"]
            sensor.input_signed = facts["dtype"] == "signed"
            self.network_intrinsics = (
                SimpleNamespace(**package.intrinsics) if package.intrinsics else None
            )
            self.camera_num = 0
            self.set_inference_roi_abs((0, 0) + FULL_SENSOR)

        def show_network_fw_progress_bar(self):
            log.progress_bar_shown = True

        def get_input_size(self):
            return self.config["input_tensor_size"]

        def set_inference_roi_abs(self, roi):
            bounded = Rect(*roi).bounded_to(Rect(0, 0, *FULL_SENSOR)).to_tuple()
            self.config["roi"] = bounded
            log.roi_calls.append(bounded)
            sensor.request_roi(bounded)

        def get_outputs(self, metadata, add_batch=False):
            return get_outputs(metadata, add_batch)

        def prepare_tensor_for_injection(self, exr_input) -> bytes:
            """picamera2: an EXR of float R, G, B in [0, 1] at the input size -> planar bytes,
            each channel round(v * 255) (minus 128 for a signed network), rows padded to 32
            bytes and the height to 2 lines, planes in the network's order."""
            if not isinstance(exr_input, FakeOpenEXR.InputFile):
                raise ValueError("exr_input must be an OpenEXR.InputFile")
            header = exr_input.header()
            window = header["dataWindow"]
            size = (window.max.x - window.min.x + 1, window.max.y - window.min.y + 1)
            if size != self.config["input_tensor_size"]:
                raise ValueError(f"Tensor size {size} does not match expected size {self.config['input_tensor_size']}")
            float_channel = FakeImath.Channel(FakeImath.PixelType(FakeImath.PixelType.FLOAT))
            planes = {}
            for name in "RGB":
                if header["channels"].get(name) != float_channel:
                    raise ValueError(f"Channel '{name}' is not of type FLOAT")
                values = np.frombuffer(exr_input.channel(name, FakeImath.PixelType(FakeImath.PixelType.FLOAT)),
                                       dtype=np.float32).reshape(size[1], size[0])
                if values.min() < 0.0 or values.max() > 1.0:
                    raise ValueError(f"Channel '{name}' values not normalised to 0-1 range")
                quantized = np.clip(np.round(values * 255.0), 0, 255)
                if self.config["input_tensor"]["dtype"] == "signed":
                    quantized = (quantized - 128).astype(np.int8)
                else:
                    quantized = quantized.astype(np.uint8)
                padded = np.zeros(((size[1] + 1) // 2 * 2, (size[0] + 31) // 32 * 32), quantized.dtype)
                padded[: size[1], : size[0]] = quantized
                planes[name] = padded
            order = "RGB" if self.config["input_tensor"]["input_format"] == "RGB" else "BGR"
            return np.concatenate([planes[c].ravel() for c in order]).tobytes()

        def _IMX500__set_input_tensor(self, input_tensor_fd: int):  # picamera2's private name, as its example calls it
            if not tensor_fd_accepted:
                raise RuntimeError("IMX500: Unable to set input tensor fd: [Errno 22] Invalid argument")
            os.lseek(input_tensor_fd, 0, os.SEEK_SET)
            chunks = []
            while chunk := os.read(input_tensor_fd, 1 << 16):
                chunks.append(chunk)
            width, height = self.config["input_tensor_size"]
            self._cmp_frm = sensor.inject(b"".join(chunks), width, height)
            log.injected_fds.append(input_tensor_fd)

        def get_injection_cmp_frm(self) -> int:
            if not cmp_frm_readable:
                print("IMX500: Unable to get injection comparison frame from device driver: [Errno 22] Invalid argument")
                return 0
            return self._cmp_frm

        def input_tensor_image(self, input_tensor):
            """picamera2: planes -> HxWx3; an RGB network's planes come out as B, G, R; each
            byte goes through the normalisation registers' arithmetic."""
            cfg = self.config["input_tensor"]
            planes = np.array(input_tensor, dtype=np.uint8).astype(np.int64)  # as picamera2: bytes raise ValueError
            planes = planes.reshape(3, cfg["height"], cfg["width"])
            if cfg["input_format"] != "BGR":
                planes = planes[::-1]
            out = np.empty_like(planes)
            for c in range(3):
                shifted = (planes[c] << cfg["norm_shift"][c]) - cfg["norm_val"][c]
                out[c] = ((shifted << cfg["div_shift"]) // cfg["div_val"][c]) & 0xFF
            return np.ascontiguousarray(np.moveaxis(out, 0, -1)).astype(np.uint8)

        @staticmethod
        def get_kpi_info(metadata):
            return get_kpi_info(metadata)

        def get_roi_scaled(self, request, stream="main"):
            config = request.picam2.camera_configuration()
            return fake_roi_scaled(self.config["roi"], request.get_metadata()["ScalerCrop"],
                                   config["raw"]["size"], config[stream]["size"])

    class FakePicamera2:
        def __init__(self, camera_num=0):
            if not camera_listed:
                raise IndexError("list index out of range")  # global_camera_info()[camera_num]
            self._config = None

        def create_preview_configuration(self, main=None, controls=None, buffer_count=4, **_):
            main = dict(main or {})
            return {"main": {"size": tuple(main.get("size", (640, 480))), "format": main.get("format", "XBGR8888")},
                    "raw": {"size": tuple(sensor.raw_size)}, "controls": dict(controls or {}),
                    "buffer_count": buffer_count}

        def start(self, config=None, show_preview=False):
            assert config["main"]["format"] == "RGB888", "the fake delivers B, G, R bytes as RGB888 does"
            self._config = config
            sensor.input_tensor_enabled = bool(config["controls"].get("CnnEnableInputTensor"))
            sensor.fault, sensor.started_at = None, sensor.frame
            log.starts += 1
            log.started = True
            log.config = config

        def camera_configuration(self):
            return self._config

        def capture_request(self, wait=None, signal_function=None, flush=None):
            log.waits.append(wait)
            sensor.check_fault()
            log.request_frames.append(sensor.frame)  # capture_request number k -> sensor frame
            log.last_roi_set.append(log.roi_calls[-1] if log.roi_calls else None)  # what get_roi_scaled would use
            main, metadata = sensor.next_frame(self._config["main"]["size"])
            return FakeCompletedRequest(self, main, metadata)

        def capture_metadata(self, wait=None, signal_function=None):
            sensor.check_fault()
            return sensor.next_frame(self._config["main"]["size"])[1]

        def stop(self):
            log.started = False

        def close(self):
            log.closed = True

    return SimpleNamespace(Picamera2=FakePicamera2, IMX500=FakeIMX500, OpenEXR=FakeOpenEXR, Imath=FakeImath, log=log)


class FakeImath:
    """The parts of the ``Imath`` module an EXR header uses."""

    class PixelType:
        UINT, HALF, FLOAT = 0, 1, 2

        def __init__(self, v=1):
            self.v = v

        def __eq__(self, other):
            return isinstance(other, FakeImath.PixelType) and other.v == self.v

    class Channel:
        def __init__(self, type=None, xSampling=1, ySampling=1):
            self.type = type if type is not None else FakeImath.PixelType(FakeImath.PixelType.HALF)

        def __eq__(self, other):
            return isinstance(other, FakeImath.Channel) and other.type == self.type

    class V2i:
        def __init__(self, x=0, y=0):
            self.x, self.y = x, y

    class Box2i:
        def __init__(self, min=None, max=None):
            self.min, self.max = min, max


class FakeOpenEXR:
    """The classic ``OpenEXR`` file API (Header, OutputFile.writePixels, InputFile.channel),
    storing the pixels in an .npz under the given name."""

    @staticmethod
    def Header(width, height):
        window = FakeImath.Box2i(FakeImath.V2i(0, 0), FakeImath.V2i(width - 1, height - 1))
        return {"dataWindow": window, "displayWindow": window,
                "channels": {c: FakeImath.Channel(FakeImath.PixelType(FakeImath.PixelType.HALF)) for c in "RGB"}}

    class OutputFile:
        def __init__(self, path, header):
            self.path, self.header = str(path), header

        def writePixels(self, pixels):
            window = self.header["dataWindow"]
            types = {name: channel.type.v for name, channel in self.header["channels"].items()}
            assert all(types[name] == FakeImath.PixelType.FLOAT for name in pixels), "the fake stores FLOAT only"
            with open(self.path, "wb") as handle:
                np.savez(handle, size=[window.max.x + 1, window.max.y + 1],
                         **{f"ch_{name}": np.frombuffer(data, np.float32) for name, data in pixels.items()})

        def close(self):
            pass

    class InputFile:
        def __init__(self, path):
            with np.load(str(path)) as data:
                self._size = tuple(int(v) for v in data["size"])
                self._channels = {key[3:]: data[key].tobytes() for key in data.files if key.startswith("ch_")}

        def header(self):
            header = FakeOpenEXR.Header(*self._size)
            header["channels"] = {name: FakeImath.Channel(FakeImath.PixelType(FakeImath.PixelType.FLOAT))
                                  for name in self._channels}
            return header

        def channel(self, name, pixel_type=None):
            return self._channels[name]

        def close(self):
            pass
