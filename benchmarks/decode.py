"""Benchmark the host side of the camera runtime: decode + overlay of one 1280x960 frame.

    .venv/bin/python benchmarks/decode.py [--repeat 300]

Both paths start from the same inputs -- a 1280x960 BGR frame (a real photograph), the
network output as picamera2's ``get_outputs`` returns it (a Fortran-ordered 96x96x1 float32
array) and the ROI in frame pixels -- and end with the frame showing the mask:

* the authors' demo (PicoSAM3 ``demo_imx500.py``): copy the latest frame, squeeze, ``> 0``,
  ``cv2.resize`` nearest into the ROI, float32 add on one channel of the ROI, clip, back to
  uint8 (its float buffer is the ROI's size: the whole frame right after start-up or ``r``);
* imx500_picosam.runtime: the logits resized bilinearly into a reused float buffer,
  ``> 0`` (the mask rule of evaluation), a saturating uint8 tint and the contour, drawn in
  place on the frame the session hands over (it owns it, so nothing is copied).

Target (issue: camera runtime): >= 5x faster for a prompt's ROI, with no per-frame
allocation of a full-frame float buffer. The last line is the headline figure.
"""

import argparse
import statistics
import time
from pathlib import Path

import cv2
import numpy as np

from imx500_picosam.geometry import Roi
from imx500_picosam.runtime.decode import MaskDecoder, draw_mask, draw_roi, logits_from_outputs

PHOTO = Path(__file__).resolve().parents[1] / "calibration_data" / "photos" / "astronaut.png"
FRAME_SIZE = (1280, 960)


def authors_demo_path(latest_frame, outputs, roi):
    frame = latest_frame.copy()
    raw = np.squeeze(outputs[0])
    mask = (raw > 0).astype(np.uint8) * 255
    x, y, w, h = roi.as_xywh()
    mask_disp = cv2.resize(mask, (w, h), interpolation=cv2.INTER_NEAREST)
    crop = frame[y : y + h, x : x + w].astype(np.float32)
    crop[..., 0] = np.clip(crop[..., 0] + mask_disp.astype(np.float32) * 0.5, 0, 255)
    frame[y : y + h, x : x + w] = crop.astype(np.uint8)
    return frame


def runtime_path(decoder, frame, outputs, roi):
    logits = logits_from_outputs(outputs, "benchmark")
    mask = decoder.decode(logits, roi)
    draw_mask(frame, mask, roi)
    draw_roi(frame, roi)
    return frame


def blob_logits():
    """Smooth, decisive logits like a trained network's: an off-centre ellipse, margin ~6."""
    yy, xx = np.mgrid[0:96, 0:96].astype(np.float32)
    return (1.0 - ((xx - 52) / 30) ** 2 - ((yy - 44) / 22) ** 2) * 6.0


def picamera2_outputs(logits):
    """What get_outputs hands over: the flat tensor reshaped (96, 96, 1) in Fortran order."""
    flat = logits[:, :, None].flatten(order="F")
    return [flat.reshape((96, 96, 1), order="F")]


def median_ms(function, repeat, prepare=lambda: None):
    times = []
    for _ in range(repeat):
        args = prepare()
        started = time.perf_counter()
        function(*args)
        times.append(time.perf_counter() - started)
    return statistics.median(times) * 1000.0


def measure(frame, outputs, roi, repeat):
    decoder = MaskDecoder()
    work = np.empty_like(frame)

    def fresh_frame():
        np.copyto(work, frame)  # not timed: the session's frame is new every time
        return (decoder, work, outputs, roi)

    for _ in range(5):  # warm up both (allocations, OpenCV's thread pool)
        authors_demo_path(frame, outputs, roi)
        runtime_path(*fresh_frame())
    authors = median_ms(authors_demo_path, repeat, prepare=lambda: (frame, outputs, roi))
    ours = median_ms(runtime_path, repeat, prepare=fresh_frame)
    ours_with_copy = median_ms(lambda *a: runtime_path(decoder, frame.copy(), outputs, roi), repeat,
                               prepare=lambda: ())
    return authors, ours, ours_with_copy


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeat", type=int, default=300)
    args = parser.parse_args()
    frame = cv2.resize(cv2.imread(str(PHOTO)), FRAME_SIZE, interpolation=cv2.INTER_AREA)
    outputs = picamera2_outputs(blob_logits())
    cases = [("full-frame ROI (start-up, after r)", Roi(0, 0, *FRAME_SIZE)),
             ("prompt ROI 480x480", Roi(400, 240, 880, 720))]
    print(f"decode + overlay of one {FRAME_SIZE[0]}x{FRAME_SIZE[1]} frame, median of {args.repeat} runs, "
          f"OpenCV {cv2.__version__}, {cv2.getNumThreads()} OpenCV threads")
    for label, roi in cases:
        authors, ours, ours_with_copy = measure(frame, outputs, roi, args.repeat)
        print(f"{label}:")
        print(f"  authors' demo path   {authors:7.3f} ms")
        print(f"  imx500_picosam       {ours:7.3f} ms  ({ours_with_copy:.3f} ms if the frame had to be copied first)")
        print(f"  speed-up {authors / ours:.1f}x")


if __name__ == "__main__":
    main()
