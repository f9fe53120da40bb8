"""The Raspberry Pi AI Camera backend: PicoSAM3 runs on the IMX500, the Pi sets ROIs and decodes.

Written against picamera2's documented API (``picamera2.devices.IMX500``, ``Picamera2``):

* ``IMX500(network_file)`` hands the RPK to the sensor driver; the firmware is uploaded when
  the camera starts, with ``show_network_fw_progress_bar()`` showing the upload;
* ``set_inference_roi_abs((x, y, w, h))`` sets the ROI in full-sensor pixels, also while
  streaming; the sensor stretches it to the 96x96 input tensor;
* each ``CompletedRequest`` carries the main-stream image and metadata: ``CnnOutputTensor``
  (flat float32), ``CnnOutputTensorInfo`` (the ctypes struct with the tensor dimensions),
  ``CnnKpiInfo`` and ``ScalerCrop``; ``get_outputs`` and ``get_kpi_info`` read them.

picamera2 exists only on Raspberry Pi OS (``pip install .[pi]`` next to the apt-installed
libcamera); it is imported when the backend is created, never when the package is imported.
Tests inject a faithful fake of this boundary (tests/fakes/picamera2_fake.py).

An ROI change reaches the output tensor a few frames later; until then the sensor still
answers for the previous ROI. With input-tensor persistency (the converter's default) each
request also carries ``CnnInputTensor`` (enabled with the ``CnnEnableInputTensor`` control):
the backend hands the picture ``input_tensor_image`` makes of it to the session, which finds
the ROI the frame was really inferred on (runtime/attribution.py). Without it the backend
falls back to dropping ``settle_frames`` results after every change, and says so once.
"""

from __future__ import annotations

import concurrent.futures
import sys
import time
from pathlib import Path
from types import SimpleNamespace
from typing import Optional, Tuple

from ..errors import PicosamError
from ..extras import picamera2_import_error
from ..firmware.package import roi_rule_of_intrinsics
from ..geometry import MODEL_INPUT_SIZE, Roi, check_rule
from .coords import IMX500_SENSOR_SIZE, StreamGeometry
from .decode import logits_from_outputs
from .session import Capture
from .watchdog import Watchdog, WatchdogSettings

DEFAULT_MAIN_SIZE = (1280, 960)  # 4:3 like the sensor, so the whole sensor is visible
DEFAULT_SETTLE_FRAMES = 2
DEFAULT_FRAME_RATE = 30.0
BUFFER_COUNT = 12  # picamera2's IMX500 examples use 12 so tensors are not dropped


def import_picamera2():
    """picamera2's two classes, or a one-line error with its fix: any import-time failure
    (not only ImportError: numpy 2 in the venv makes apt's numpy-1 modules raise ValueError)."""
    try:
        from picamera2 import Picamera2
        from picamera2.devices import IMX500
    except Exception as err:  # noqa: BLE001 - every import-time failure becomes one line
        raise picamera2_import_error(err, "the camera backend", "; elsewhere use --emulate") from None
    return SimpleNamespace(Picamera2=Picamera2, IMX500=IMX500)


NOT_LISTED_FIX = ("check the camera's ribbon cable and `dtoverlay=imx500` in /boot/firmware/config.txt, reboot, "
                  "and see that `rpicam-hello --list-cameras` lists an imx500 (`picosam doctor` checks each step)")


def open_imx500(api, rpk_path: Path, **options):
    """``IMX500(rpk)`` with its failures as one line. A sensor whose v4l-subdev exists but that
    libcamera does not list ends picamera2's ``next(...)`` over ``global_camera_info()`` in a
    bare StopIteration: said as such."""
    try:
        return api.IMX500(str(Path(rpk_path).resolve()), **options)
    except StopIteration:
        raise PicosamError(f"{rpk_path}: the IMX500 driver is loaded but libcamera does not list the camera: "
                           f"{NOT_LISTED_FIX}") from None


def open_camera(api, camera_num: int, rpk_path: Path):
    """``Picamera2(camera_num)`` with its failures as one line: a number libcamera does not list
    (IndexError), or a camera it cannot open (RuntimeError: busy, or not answering)."""
    try:
        return api.Picamera2(camera_num)
    except IndexError:
        raise PicosamError(f"{rpk_path}: libcamera lists no camera {camera_num} (the IMX500 is not among its "
                           f"cameras): {NOT_LISTED_FIX}") from None
    except RuntimeError as err:
        cause = f" ({err.__cause__})" if err.__cause__ else ""
        raise PicosamError(f"{rpk_path}: libcamera could not open camera {camera_num}: {err}{cause}: is another "
                           "program using the camera (rpicam-*, another picosam)? Close it and try again") from None


def check_picosam_rpk(rpk_path: Path) -> dict:
    """The RPK's summary if its network takes PicoSAM's 96x96 RGB input; else a one-line error."""
    from firmware_packaging.rpk import read_rpk, summarize

    summary = summarize(read_rpk(rpk_path))
    tensor = summary["input_tensor"]
    size = (tensor.get("width"), tensor.get("height"))
    if size != (MODEL_INPUT_SIZE, MODEL_INPUT_SIZE):
        raise PicosamError(
            f"{rpk_path}: its network takes a {size[0]}x{size[1]} input, not PicoSAM's "
            f"{MODEL_INPUT_SIZE}x{MODEL_INPUT_SIZE}: build a PicoSAM network.rpk with `make rpk`"
        )
    return summary


class IMX500Backend:
    """PicoSAM firmware on the IMX500 through picamera2."""

    name = "imx500"
    is_still = False
    roi_knowledge = "settle-frames"  # used only when the frames carry no input tensor

    def __init__(
        self,
        rpk_path: Path,
        main_size: Tuple[int, int] = DEFAULT_MAIN_SIZE,
        settle_frames: int = DEFAULT_SETTLE_FRAMES,
        frame_rate: Optional[float] = None,
        picamera2=None,
        log=None,
        watchdog: WatchdogSettings = WatchdogSettings(),
        roi_rule: Optional[str] = None,
    ):
        self.rpk_path = Path(rpk_path)
        self.main_size = tuple(main_size)
        self.settle_frames = settle_frames
        self.frame_rate = frame_rate
        self.rpk_summary = check_picosam_rpk(self.rpk_path)
        # The model's ROI rule, from the RPK's network_intrinsics unless overridden (roi_rule).
        self.roi_rule_source = "override" if roi_rule else "rpk"
        self.roi_rule = check_rule(roi_rule) if roi_rule else roi_rule_of_intrinsics(self.rpk_summary.get("intrinsics"))
        self._api = picamera2 if picamera2 is not None else import_picamera2()
        self._imx500 = None
        self._camera = None
        self._raw_size: Optional[Tuple[int, int]] = None
        self._requested: Optional[Roi] = None  # the ROI last sent to the sensor
        self._settling = 0
        self._index = 0
        self._log = log if log is not None else (lambda line: print(line, file=sys.stderr))
        self._fallback_said = False
        self._had_output_tensor = False
        self._restart_reason: Optional[str] = None
        self.watchdog = Watchdog(watchdog)
        self._rate = DEFAULT_FRAME_RATE

    def start(self) -> StreamGeometry:
        return self._geometry(self._open())

    def _open(self) -> dict:
        """IMX500(rpk) (which hands the network to the driver), Picamera2, start: the first metadata."""
        try:
            self._imx500 = open_imx500(self._api, self.rpk_path)
        except RuntimeError as err:
            raise PicosamError(f"{self.rpk_path}: the IMX500 refused it: {err}") from None
        intrinsics = self._imx500.network_intrinsics
        rate = self.frame_rate or (intrinsics.inference_rate if intrinsics is not None else None) or DEFAULT_FRAME_RATE
        self._rate = float(rate)
        self._camera = open_camera(self._api, self._imx500.camera_num, self.rpk_path)
        config = self._camera.create_preview_configuration(
            main={"size": self.main_size, "format": "RGB888"},  # RGB888 is B, G, R in memory: OpenCV's order
            controls={"FrameRate": rate, "CnnEnableInputTensor": True},  # the input tensor attributes frames
            buffer_count=BUFFER_COUNT,
        )
        self._imx500.show_network_fw_progress_bar()
        self._camera.start(config, show_preview=False)
        configured = self._camera.camera_configuration()
        self.main_size = tuple(configured["main"]["size"])
        self._raw_size = tuple(configured["raw"]["size"])
        return self._camera.capture_metadata(wait=self.watchdog.settings.startup_s)

    def _restart(self, reason: str) -> None:
        """The watchdog's remedy: close the camera, reload the network, start, re-send the ROI."""
        self.watchdog.restarting(self._index, reason)
        self._log(f"watchdog: {reason}; restarting the camera and reloading {self.rpk_path.name} "
                  f"(restart {len(self.watchdog.restarts)})")
        self._close_camera()
        self._imx500 = None
        try:
            self._open()
        except (PicosamError, RuntimeError, TimeoutError) as err:
            self._log(f"watchdog: the restart failed ({err})")
            return  # the next capture notices the missing camera and tries again
        if self._requested is not None:  # re-apply the prompt's ROI
            self._imx500.set_inference_roi_abs(self._requested.as_xywh())
            self._settling = self.settle_frames

    def kpis(self):
        return self.watchdog.kpis()

    def _geometry(self, metadata: dict) -> StreamGeometry:
        return StreamGeometry(IMX500_SENSOR_SIZE, tuple(metadata["ScalerCrop"]), self._raw_size, self.main_size)

    def set_roi(self, roi: Roi) -> None:
        if roi == self._requested:
            return
        self._imx500.set_inference_roi_abs(roi.as_xywh())
        self._requested = roi
        self._settling = self.settle_frames

    def capture(self) -> Optional[Capture]:
        """The next frame; a stalled stream (no request in time, a libcamera error, frames
        without outputs for too long) restarts the camera first (see runtime/watchdog.py)."""
        while True:
            if self._restart_reason is not None:
                reason, self._restart_reason = self._restart_reason, None
                self._restart(reason)
                continue
            if self._camera is None:
                self._restart("the camera is not running")
                continue
            wait = self.watchdog.wait_s(self._rate)
            try:
                request = self._camera.capture_request(wait=wait)
            except (TimeoutError, concurrent.futures.TimeoutError):
                self._restart(f"no frame within {wait:.1f} s")
                continue
            except RuntimeError as err:
                self._restart(f"libcamera: {err}")
                continue
            capture = self._read(request)
            self._restart_reason = self.watchdog.frame(self._had_output_tensor)  # acted on next time
            return capture

    def _read(self, request) -> Capture:
        started = time.perf_counter()
        try:
            image = request.make_array("main")
            metadata = request.get_metadata()
        finally:
            request.release()
        settled = self._settling == 0
        if self._settling > 0:
            self._settling -= 1
        outputs = self._imx500.get_outputs(metadata)
        logits = logits_from_outputs(outputs, str(self.rpk_path))
        self._had_output_tensor = logits is not None  # before settling hides it
        input_image = None
        if logits is not None and metadata.get("CnnInputTensor"):
            input_image = self._imx500.input_tensor_image(metadata["CnnInputTensor"])
        elif logits is not None and not self._fallback_said:
            self._fallback_said = True
            self._log(f"note: {self.rpk_path.name} sends no input tensor (converted without input persistency?): "
                      f"results are attributed by waiting settle_frames={self.settle_frames} after each ROI change")
        if input_image is None and not settled:
            logits = None
        kpi = self._imx500.get_kpi_info(metadata)
        capture = Capture(
            index=self._index, image=image, geometry=self._geometry(metadata),
            roi=self._requested if logits is not None and input_image is None else None, logits=logits,
            input_image=input_image,
            dnn_runtime_ms=None if kpi is None else float(kpi[0]),
            dsp_runtime_ms=None if kpi is None else float(kpi[1]),
            host_ms=(time.perf_counter() - started) * 1000.0,
        )
        self._index += 1
        return capture

    def close(self) -> None:
        if self._camera is not None:
            self._camera.stop()
            self._camera.close()
            self._camera = None

    def _close_camera(self) -> None:
        """close() for a camera that may be wedged: its errors do not stop a restart."""
        camera, self._camera = self._camera, None
        if camera is None:
            return
        for action in ("stop", "close"):
            try:
                getattr(camera, action)()
            except Exception as err:  # noqa: BLE001 - a wedged camera fails in any way; the restart goes on
                self._log(f"watchdog: camera {action}() failed during the restart ({err})")
