"""On-chip evaluation: the ROI crops of a data set injected into the IMX500, scored as the
float / MCT / INT8 TFLite engines are.

picamera2 (>= 0.3.32, where these helpers appeared) can replace the sensor's input tensor with one given by the host:

* ``IMX500(rpk, tensor_injection=True)`` enables it in the driver before the network is
  loaded; the driver refuses unless the sensor overlay was loaded with ``bypass-cache``
  (``dtoverlay=imx500,cam0,bypass-cache`` in ``/boot/firmware/config.txt``);
* ``prepare_tensor_for_injection(OpenEXR.InputFile)`` turns an EXR of float R, G, B in
  [0, 1] into the sensor's planar, padded, quantized bytes;
* the bytes go to the driver through a memfd (``_IMX500__set_input_tensor(fd)``, the name
  picamera2's own injection example calls), and ``get_injection_cmp_frm()`` names the
  frame count (``CnnOutputTensorInfo.frameCount``, modulo 256) whose output will carry it.

A frame whose count is past the comparison frame means the tensor was missed: it is
injected again (``retries`` times, as modlib's evaluators retry), and a frame at the
comparison count whose ``CnnInputTensor`` is not the injected picture (grey correlation
below 0.98) counts as a miss too.
:class:`OnCameraMethod` is an evaluation method like those of ``evaluate.py``
(``predict_crops(uint8 N x 96 x 96 x 3) -> N x 96 x 96 logits``), so the paper protocol
(96x96 crop IoU) scores it next to the others. Each crop goes in as ``crop / 255``, which
``prepare_tensor_for_injection`` rounds back to the crop's own bytes.

Only checked against the fake of this boundary in tests/fakes (no camera here).
"""

from __future__ import annotations

import ctypes
import io
import os
import tempfile
from pathlib import Path
from types import SimpleNamespace
from typing import Callable, Optional

import numpy as np

from ..errors import PicosamError
from ..extras import picamera2_import_error
from ..firmware.package import roi_rule_of_intrinsics
from ..geometry import MODEL_INPUT_SIZE, check_rule
from .attribution import grey_signature
from .decode import logits_from_outputs
from .imx500 import BUFFER_COUNT, DEFAULT_FRAME_RATE, check_picosam_rpk, open_camera, open_imx500

INJECTION_OVERLAY = "dtoverlay=imx500,cam0,bypass-cache"
DEFAULT_RETRIES = 5
FRAMES_PER_TRY = 12  # frames to wait for the comparison frame before injecting again
FRAME_WAIT_S = 5.0


class _TensorInfo(ctypes.LittleEndianStructure):
    _fields_ = [("tensor_data_num", ctypes.c_uint32), ("num_dimensions", ctypes.c_uint32),
                ("size", ctypes.c_uint16 * 16)]


class _OutputTensorInfo(ctypes.LittleEndianStructure):
    """libcamera's ``CnnOutputTensorInfoExported``: only ``frameCount`` is read here."""

    _fields_ = [("network_name", ctypes.c_char * 64), ("num_tensors", ctypes.c_uint32),
                ("info", _TensorInfo * 16), ("frameCount", ctypes.c_uint8)]


def frame_count(metadata: dict) -> Optional[int]:
    raw = metadata.get("CnnOutputTensorInfo")
    if not raw or len(bytes(raw)) != ctypes.sizeof(_OutputTensorInfo):
        return None
    return int(_OutputTensorInfo.from_buffer_copy(bytes(raw)).frameCount)


def frames_past(count: int, target: int) -> int:
    """Signed distance of frame ``count`` from ``target`` on the 8-bit counter."""
    diff = (count - target) & 0xFF
    return diff - 256 if diff > 127 else diff


def import_injection_api():
    """picamera2 and the EXR modules its injection takes, or a one-line error with its fix
    (any import-time failure, e.g. the numpy ABI clash's ValueError, not only ImportError)."""
    try:
        from picamera2 import Picamera2
        from picamera2.devices import IMX500
        import Imath
        import OpenEXR
    except Exception as err:  # noqa: BLE001 - every import-time failure becomes one line
        raise picamera2_import_error(err, "on-camera evaluation (picamera2 >= 0.3.32 brings OpenEXR)",
                                     "; run it on the Pi with the AI Camera") from None
    return SimpleNamespace(Picamera2=Picamera2, IMX500=IMX500, OpenEXR=OpenEXR, Imath=Imath)


class OnCameraMethod:
    """PicoSAM's network.rpk on the IMX500, fed by tensor injection."""

    kind = "crop"
    name = "picosam-imx500"

    def __init__(self, rpk_path: Path, api=None, retries: int = DEFAULT_RETRIES,
                 log: Callable[[str], None] = lambda line: None, roi_rule: Optional[str] = None):
        self.rpk_path = Path(rpk_path)
        summary = check_picosam_rpk(self.rpk_path)
        # The crops evaluate injects are cut by the RPK's model's ROI rule (its network_intrinsics).
        self.roi_rule = check_rule(roi_rule) if roi_rule else roi_rule_of_intrinsics(summary.get("intrinsics"))
        self.retries = retries
        self.retried = 0  # injections repeated after a frame-count mismatch, over the run
        self._log = log
        self._api = api if api is not None else import_injection_api()
        self._folder = tempfile.TemporaryDirectory(prefix="picosam-inject-")
        try:
            self._imx500 = open_imx500(self._api, self.rpk_path, tensor_injection=True)
        except PicosamError:
            self._folder.cleanup()
            raise
        except RuntimeError as err:
            self._folder.cleanup()
            if "injection" in str(err):
                raise PicosamError(
                    f"{self.rpk_path}: the IMX500 driver refused tensor injection ({err}): add "
                    f"`{INJECTION_OVERLAY}` to /boot/firmware/config.txt and reboot (`picosam doctor --injection` checks it)"
                ) from None
            raise PicosamError(f"{self.rpk_path}: the IMX500 refused it: {err}") from None
        intrinsics = self._imx500.network_intrinsics
        rate = (intrinsics.inference_rate if intrinsics is not None else None) or DEFAULT_FRAME_RATE
        try:
            self._camera = open_camera(self._api, self._imx500.camera_num, self.rpk_path)
        except PicosamError:
            self._folder.cleanup()
            raise
        config = self._camera.create_preview_configuration(  # a small main stream: only the tensors matter
            main={"size": (640, 480), "format": "RGB888"},
            controls={"FrameRate": rate, "CnnEnableInputTensor": True}, buffer_count=BUFFER_COUNT)
        self._imx500.show_network_fw_progress_bar()
        self._camera.start(config, show_preview=False)

    # -- the evaluation method ---------------------------------------------------------------
    def predict_crops(self, crops_uint8: np.ndarray) -> np.ndarray:
        return np.stack([self._infer(crop) for crop in np.asarray(crops_uint8, dtype=np.uint8)])

    def close(self) -> None:
        if self._camera is not None:
            self._camera.stop()
            self._camera.close()
            self._camera = None
        self._folder.cleanup()

    def __enter__(self) -> "OnCameraMethod":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    # -- one crop ------------------------------------------------------------------------------
    def _infer(self, crop: np.ndarray) -> np.ndarray:
        if crop.shape != (MODEL_INPUT_SIZE, MODEL_INPUT_SIZE, 3):
            raise PicosamError(f"on-camera evaluation takes 96x96 RGB crops, not {crop.shape}")
        tensor = self._tensor_bytes(crop)
        wanted = grey_signature(crop)
        targets = []
        for attempt in range(self.retries):
            if attempt:
                self.retried += 1
            target = self._inject(tensor)
            targets.append(target)
            logits = self._await(target, wanted)
            if logits is not None:
                return logits
        if not any(targets):
            # picamera2's get_injection_cmp_frm() returns 0 when its ioctl fails (after printing the
            # driver's error); a real comparison frame is 0 once in 256.
            raise PicosamError(
                f"{self.rpk_path}: picamera2 could not read the injection comparison frame from the IMX500 driver "
                f"(get_injection_cmp_frm() gave 0, its answer when the driver refuses, in all {self.retries} tries, "
                "and no frame 0 carried the crop): this kernel's imx500 driver lacks tensor injection: sudo apt update "
                "&& sudo apt full-upgrade, then reboot (`picosam doctor --injection` checks the overlay)"
            )
        raise PicosamError(
            f"{self.rpk_path}: the sensor did not return the injected crop at its comparison frame in "
            f"{self.retries} tries (frame-count mismatch each time): is another program using the camera?"
        )

    def _tensor_bytes(self, crop: np.ndarray) -> bytes:
        """The crop as an EXR of floats in [0, 1] through picamera2's ``prepare_tensor_for_injection``."""
        OpenEXR, Imath = self._api.OpenEXR, self._api.Imath
        height, width = crop.shape[:2]
        header = OpenEXR.Header(width, height)
        header["channels"] = {c: Imath.Channel(Imath.PixelType(Imath.PixelType.FLOAT)) for c in "RGB"}
        path = os.path.join(self._folder.name, "crop.exr")
        floats = crop.astype(np.float32) / 255.0
        out = OpenEXR.OutputFile(path, header)
        out.writePixels({c: np.ascontiguousarray(floats[..., i]).tobytes() for i, c in enumerate("RGB")})
        out.close()
        exr = OpenEXR.InputFile(path)
        try:
            return self._imx500.prepare_tensor_for_injection(exr)
        except ValueError as err:
            raise PicosamError(f"{self.rpk_path}: picamera2 would not prepare the crop for injection: {err}") from None
        finally:
            exr.close()

    def _inject(self, tensor: bytes) -> int:
        setter = getattr(self._imx500, "_IMX500__set_input_tensor", None)
        if setter is None:
            raise PicosamError("this picamera2 has no tensor injection (it came in 0.3.32): sudo apt update && "
                               "sudo apt install python3-picamera2")
        fd = os.memfd_create("picosam-tensor", os.MFD_CLOEXEC)
        try:
            with io.FileIO(fd, "wb", closefd=False) as handle:
                handle.write(tensor)
            try:
                setter(fd)
            except RuntimeError as err:  # picamera2: "IMX500: Unable to set input tensor fd: [Errno ...]"
                raise PicosamError(
                    f"{self.rpk_path}: the IMX500 driver refused the injected tensor ({err}): it takes one only when "
                    f"injection was enabled as the network loaded, with `{INJECTION_OVERLAY}` in "
                    "/boot/firmware/config.txt and a reboot (`picosam doctor --injection`); if that is in place, "
                    "sudo apt update && sudo apt full-upgrade for a kernel whose driver has injection"
                ) from None
            return int(self._imx500.get_injection_cmp_frm())
        finally:
            os.close(fd)

    def _await(self, target: int, wanted: Optional[np.ndarray]) -> Optional[np.ndarray]:
        """The logits of the frame at ``target``, or None when it was missed (retry)."""
        for _ in range(FRAMES_PER_TRY):
            request = self._camera.capture_request(wait=FRAME_WAIT_S)
            try:
                metadata = request.get_metadata()
            finally:
                request.release()
            count = frame_count(metadata)
            if count is None:
                continue  # the firmware is still loading
            distance = frames_past(count, target)
            if distance < 0:
                continue
            if distance > 0:
                self._log(f"injection: frame {count} is past the comparison frame {target}; injecting again")
                return None
            seen = metadata.get("CnnInputTensor")
            if seen and not _same_picture(self._imx500.input_tensor_image(seen), wanted):
                self._log(f"injection: frame {count} did not carry the injected crop; injecting again")
                return None
            return logits_from_outputs(self._imx500.get_outputs(metadata), str(self.rpk_path))
        return None


def _same_picture(seen: np.ndarray, wanted: Optional[np.ndarray], min_score: float = 0.98) -> bool:
    """Whether the input tensor the sensor reports is the injected crop: the correlation of
    grey images (any channel order, any gain and offset of the RPK's input normalisation)."""
    if wanted is None:
        return True  # a flat crop: nothing to tell frames apart by
    signature = grey_signature(seen)
    return signature is not None and float(np.dot(signature, wanted)) >= min_score
