"""Benchmark the emulator's two engines: MCT's quantized Keras model vs its INT8 TFLite export.

    .venv/bin/python benchmarks/emulator.py [--checkpoint C] [--repeat 200]

Quantizes the checkpoint exactly as `make rpk` does (default: the shipped trained
checkpoint, else a seeded initialisation, as `picosam demo --emulate` chooses), exports the
INT8 TFLite model, then prints for each engine the median latency of one 96x96 inference and
of one whole emulator frame (ROI crop + inference + decode) on a real photograph, and the
agreement of the TFLite export with MCT's model on the crops of the held-out photographs
(never used for calibration): logit correlation, mean absolute logit difference, and how
often the masks agree (pixels, mean IoU).
"""

import argparse
import os
import statistics
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import numpy as np  # noqa: E402

from imx500_picosam.calibration import load_crops  # noqa: E402
from imx500_picosam.model.runners import KerasEngine, TfliteEngine  # noqa: E402
from imx500_picosam.metrics import mask_iou  # noqa: E402
from imx500_picosam.firmware.quantize import int8_tflite_as_built, quantized_as_built  # noqa: E402
from imx500_picosam.model.resolve import resolve_checkpoint  # noqa: E402
from imx500_picosam.runtime import EmulatorBackend, Session, open_source  # noqa: E402

PHOTO = Path(__file__).resolve().parents[1] / "calibration_data" / "photos" / "flower.jpg"  # 427x640, held out


def interleaved_ms(functions, repeat):
    """Median and 90th percentile (ms) of each function, run in turn so that a busy machine
    slows all of them alike."""
    for function in functions.values():
        for _ in range(5):
            function()
    times = {name: [] for name in functions}
    for _ in range(repeat):
        for name, function in functions.items():
            started = time.perf_counter()
            function()
            times[name].append(time.perf_counter() - started)
    return {name: (statistics.median(t) * 1000.0, float(np.percentile(t, 90)) * 1000.0) for name, t in times.items()}


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--checkpoint", type=Path, default=None)
    parser.add_argument("--repeat", type=int, default=200)
    args = parser.parse_args()
    checkpoint = resolve_checkpoint(args.checkpoint)
    print(f"checkpoint {checkpoint.describe()}, {os.cpu_count()} CPU cores")
    quantized = quantized_as_built(checkpoint).model
    tflite_path = int8_tflite_as_built(checkpoint)
    engines = {"MCT Keras (tf.function)": KerasEngine(quantized),
               "INT8 TFLite, 1 thread": TfliteEngine(tflite_path, num_threads=1),
               "INT8 TFLite, 2 threads": TfliteEngine(tflite_path, num_threads=2)}
    crop = load_crops("held_out", rule="square").as_uint8()[:1]
    inference = interleaved_ms({name: (lambda e=engine: e.predict_crops(crop)) for name, engine in engines.items()},
                               args.repeat)
    sessions = {name: Session(EmulatorBackend(open_source(str(PHOTO)), engine), boxes=[(60, 150, 300, 330)])
                for name, engine in engines.items()}
    for session in sessions.values():
        session.start()
    frame = interleaved_ms({name: session.step for name, session in sessions.items()}, args.repeat)
    print(f"latency, median (90th percentile) of {args.repeat} interleaved runs:")
    for name in engines:
        print(f"  {name:24s} inference {inference[name][0]:6.2f} ms ({inference[name][1]:.2f})   "
              f"emulator frame {frame[name][0]:6.2f} ms ({frame[name][1]:.2f})")

    crops = load_crops("held_out", rule="square").as_uint8()
    keras = engines["MCT Keras (tf.function)"].predict_crops(crops)
    tflite = engines["INT8 TFLite, 1 thread"].predict_crops(crops)
    ious = [mask_iou(k > 0, t > 0) for k, t in zip(keras, tflite)]
    print(f"agreement of the INT8 TFLite export with MCT's model on {len(crops)} held-out crops:")
    print(f"  logit correlation {np.corrcoef(keras.ravel(), tflite.ravel())[0, 1]:.5f}, "
          f"mean |difference| {np.abs(keras - tflite).mean():.5f} (mean |logit| {np.abs(keras).mean():.5f})")
    print(f"  mask pixels agreeing {((keras > 0) == (tflite > 0)).mean() * 100:.2f} %, "
          f"mean IoU {np.mean(ious):.4f} (min {np.min(ious):.4f}), "
          f"mask coverage {100 * (keras > 0).mean():.1f} % of pixels")


if __name__ == "__main__":
    main()
