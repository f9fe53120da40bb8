"""On-device smoke test: does an RPK load on the IMX500 and give PicoSAM's output?

Runs on a Raspberry Pi with the AI Camera, through picamera2 (Raspberry Pi OS:
``sudo apt install python3-picamera2``). It needs only the standard library, picamera2
and this project's pure-Python RPK reader, so ``picosam flash`` can run it on a Pi that
does not have this project installed; by hand::

    python3 -m imx500_picosam.deploy.smoke firmware.rpk [--frames 30]

Every step uses picamera2's public IMX500 API:

1. an IMX500 must be listed by ``Picamera2.global_camera_info()`` (else: camera not detected);
2. ``IMX500(network_file)`` hands the RPK to the sensor driver and starting the camera
   uploads it (picamera2's own progress bar shows the upload);
3. a fixed region of interest, the centred square of the full sensor, is set with
   ``set_inference_roi_abs`` (the crop the sensor stretches to the 96x96 input);
4. frames are captured until the first output tensor arrives; the firmware load time is
   measured from ``IMX500()`` to that frame (seconds, ``time.monotonic``);
5. N more frames are captured; a frame counts when its first output tensor has the
   expected number of elements (96x96x1 = 9216 for PicoSAM), and the DNN runtime of each
   frame that carries one is read from ``IMX500.get_kpi_info``;
6. the test passes when at least half of the N frames (rounded up) had such a tensor.

It prints one line of JSON: frames, tensors_received, dnn_ms_median, dnn_ms_p95
(nearest-rank 95th percentile), firmware_load_seconds, the ROI and what was required.
"""

from __future__ import annotations

import argparse
import json
import math
import statistics
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence, Tuple

from ..errors import PicosamError, UserError

PICOSAM_OUTPUT_ELEMENTS = 96 * 96  # one 96x96x1 map of mask logits
DEFAULT_FRAMES = 30
DEFAULT_UPLOAD_TIMEOUT_S = 180.0  # a first upload of a few MB over SPI takes tens of seconds
DEFAULT_FRAME_RATE = 30.0  # when the RPK's intrinsics name no inference rate
BUFFER_COUNT = 12  # as picamera2's IMX500 examples configure the camera


class CameraNotDetected(PicosamError):
    """No IMX500 answered: ribbon cable, camera detection, or the wrong camera port."""


@dataclass
class SmokeSummary:
    network_file: str
    passed: bool
    reason: str
    frames: int
    tensors_received: int
    required: int
    expected_elements: int
    output_shapes: List[List[int]]
    kpi_frames: int
    dnn_ms_median: Optional[float]
    dnn_ms_p95: Optional[float]
    firmware_load_seconds: Optional[float]
    roi: List[int]

    def as_dict(self) -> Dict[str, Any]:
        return asdict(self)


def nearest_rank_percentile(values: Sequence[float], percent: float) -> float:
    """The smallest value with at least ``percent`` % of the values at or below it."""
    ordered = sorted(values)
    rank = max(1, math.ceil(percent / 100 * len(ordered)))
    return ordered[rank - 1]


def centre_square_roi(sensor_size: Sequence[int]) -> Tuple[int, int, int, int]:
    """(left, top, width, height) of the largest centred square of the sensor."""
    width, height = int(sensor_size[0]), int(sensor_size[1])
    side = min(width, height)
    return ((width - side) // 2, (height - side) // 2, side, side)


def run_smoke_test(
    network_file: Path,
    frames: int = DEFAULT_FRAMES,
    expected_elements: int = PICOSAM_OUTPUT_ELEMENTS,
    upload_timeout: float = DEFAULT_UPLOAD_TIMEOUT_S,
    frame_rate: Optional[float] = None,
) -> SmokeSummary:
    """Run ``network_file`` on the IMX500 and summarise; raises only when nothing could run."""
    from firmware_packaging.rpk import read_rpk

    network_file = Path(network_file)
    if frames < 1:
        raise PicosamError(f"smoke test: frames must be at least 1, got {frames}")
    package = read_rpk(network_file)  # a bad file is named here, before the sensor sees it
    rate = frame_rate or (package.intrinsics or {}).get("inference_rate") or DEFAULT_FRAME_RATE
    picamera2_class, imx500_class = _import_picamera2()
    _require_an_imx500(picamera2_class)

    started = time.monotonic()
    try:
        imx500 = imx500_class(str(network_file))
    except RuntimeError as err:
        if "dev-node not found" in str(err):
            raise CameraNotDetected(f"picamera2 lists an IMX500 but cannot open it: {err}") from None
        raise PicosamError(f"{network_file}: picamera2 could not hand it to the IMX500: {err}") from None
    try:
        camera = picamera2_class(imx500.camera_num)
    except (RuntimeError, IndexError) as err:
        raise PicosamError(f"the IMX500 camera did not open (is another program using it?): {err}") from None
    try:
        return _capture(camera, imx500, network_file, started, frames, expected_elements, upload_timeout, rate)
    finally:
        try:
            camera.stop()
        finally:
            camera.close()


def _import_picamera2():
    try:
        from picamera2 import Picamera2
        from picamera2.devices import IMX500
    except Exception as err:  # noqa: BLE001 - any import-time failure (the numpy ABI clash is a ValueError)
        from ..extras import picamera2_import_error

        raise picamera2_import_error(err, f"the smoke test ({sys.executable})") from None
    return Picamera2, IMX500


def _require_an_imx500(picamera2_class) -> None:
    cameras = picamera2_class.global_camera_info()
    if not any(camera.get("Model") == "imx500" for camera in cameras):
        found = ", ".join(str(camera.get("Model")) for camera in cameras) or "no camera at all"
        raise CameraNotDetected(
            f"no IMX500 among the cameras libcamera sees ({found}): check the ribbon cable and "
            "`rpicam-hello --list-cameras`"
        )


def _capture(camera, imx500, network_file: Path, started: float, frames: int, expected_elements: int,
             upload_timeout: float, rate: float) -> SmokeSummary:
    roi = centre_square_roi(camera.camera_properties["PixelArraySize"])
    imx500.set_inference_roi_abs(roi)
    config = camera.create_preview_configuration(controls={"FrameRate": rate}, buffer_count=BUFFER_COUNT)
    imx500.show_network_fw_progress_bar()
    try:
        camera.start(config)
    except RuntimeError as err:
        raise PicosamError(f"the camera did not start with {network_file}: {err}") from None

    load_seconds = _wait_for_first_tensor(camera, imx500, started, upload_timeout)
    required = math.ceil(frames / 2)
    received, shapes, dnn_ms = 0, set(), []
    if load_seconds is not None:
        for _ in range(frames):
            metadata = camera.capture_metadata()
            outputs = imx500.get_outputs(metadata)
            if outputs:
                shapes.add(tuple(int(n) for n in outputs[0].shape))
                received += int(outputs[0].size == expected_elements)
            kpi = imx500.get_kpi_info(metadata)
            if kpi is not None:
                dnn_ms.append(float(kpi[0]))

    if load_seconds is None:
        reason = (f"no output tensor within {upload_timeout:g} s of loading the network: the firmware did not "
                  "finish uploading or does not run on the sensor")
    else:
        reason = (f"{received} of {frames} frames had a {expected_elements}-element output tensor "
                  f"(need {required}; shapes seen: {_shapes_text(shapes)})")
    return SmokeSummary(
        network_file=str(network_file),
        passed=load_seconds is not None and received >= required,
        reason=reason,
        frames=frames,
        tensors_received=received,
        required=required,
        expected_elements=expected_elements,
        output_shapes=[list(shape) for shape in sorted(shapes)],
        kpi_frames=len(dnn_ms),
        dnn_ms_median=round(statistics.median(dnn_ms), 3) if dnn_ms else None,
        dnn_ms_p95=round(nearest_rank_percentile(dnn_ms, 95), 3) if dnn_ms else None,
        firmware_load_seconds=round(load_seconds, 2) if load_seconds is not None else None,
        roi=list(roi),
    )


def _wait_for_first_tensor(camera, imx500, started: float, timeout: float) -> Optional[float]:
    """Seconds from ``started`` to the first frame with an output tensor, or None on timeout."""
    while time.monotonic() - started < timeout:
        if imx500.get_outputs(camera.capture_metadata()):
            return time.monotonic() - started
    return None


def _shapes_text(shapes) -> str:
    return ", ".join("x".join(map(str, shape)) for shape in sorted(shapes)) or "none"


def main(argv: Optional[Sequence[str]] = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python3 -m imx500_picosam.deploy.smoke",
        description="Load an RPK on the IMX500, capture frames with a fixed ROI and print one JSON summary.",
    )
    parser.add_argument("network_file", type=Path)
    parser.add_argument("--frames", type=int, default=DEFAULT_FRAMES)
    parser.add_argument("--expected-elements", type=int, default=PICOSAM_OUTPUT_ELEMENTS)
    parser.add_argument("--upload-timeout", type=float, default=DEFAULT_UPLOAD_TIMEOUT_S)
    parser.add_argument("--frame-rate", type=float, default=None)
    args = parser.parse_args(argv)
    try:
        summary = run_smoke_test(args.network_file, args.frames, args.expected_elements, args.upload_timeout,
                                 args.frame_rate)
    except UserError as err:
        print(f"error: {err}", file=sys.stderr)
        return 1
    print(json.dumps(summary.as_dict()))
    if not summary.passed:
        print(f"error: smoke test failed: {summary.reason}", file=sys.stderr)
    return 0 if summary.passed else 1


if __name__ == "__main__":
    sys.exit(main())
