"""How the calibration set changes the quantized model: float-vs-quantized mask agreement on
the bundled held-out crops after MCT PTQ on the bundled set, on annotated COCO objects and on
sampled boxes in a folder of photos (``picosam build --calibration``).

    PICOSAM_CACHE_DIR=/tmp/calib-cache .venv/bin/python benchmarks/calibration_sets.py \\
        [--checkpoint C] [--coco /work/shared/data/coco2017-train-subset] [--crops 80]

``--coco DIR`` holds ``annotations.json`` and ``images/``. Prints, per set: the ROI rule, the
crops calibrated on, the seconds (quantization plus agreement; a cached set skips MCT) and the
mean / minimum IoU of ``float logits > 0`` vs ``quantized logits > 0`` (the build report's
agreement rule) on the held-out crops, with their count n.
"""

import argparse
import time
from pathlib import Path

from imx500_picosam.toolchain import quiet_tensorflow


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--checkpoint", type=Path, default=None)
    parser.add_argument("--coco", type=Path, default=Path("/work/shared/data/coco2017-train-subset"))
    parser.add_argument("--crops", type=int, default=80)
    args = parser.parse_args()
    quiet_tensorflow()
    from imx500_picosam import calibration
    from imx500_picosam.firmware.build import mask_agreement
    from imx500_picosam.firmware.quantize import QuantizationSettings, quantized_as_built
    from imx500_picosam.learn.data import load_instances
    from imx500_picosam.model.checkpoint import load_model
    from imx500_picosam.model.resolve import resolve_checkpoint

    ckpt = resolve_checkpoint(args.checkpoint)
    float_model = load_model(ckpt)
    held_out = calibration.load_crops("held_out", rule=ckpt.roi_rule).images
    instances = load_instances(args.coco / "annotations.json", args.coco / "images")
    boxes = {}
    for instance in instances.instances:
        boxes.setdefault(instance.image_path, []).append(instance.box_xywh)
    sets = {
        "bundled": None,
        f"coco objects ({args.coco.name})": calibration.annotated_photos(str(args.coco / "annotations.json"), boxes, args.crops),
        f"photo folder ({args.coco.name}/images)": calibration.photo_folder(args.coco / "images", args.crops),
    }
    print(f"checkpoint {ckpt.describe()}, ROI rule {ckpt.roi_rule}")
    for name, source in sets.items():
        started = time.perf_counter()
        quantized = quantized_as_built(ckpt, QuantizationSettings(calibration=source), float_model=float_model)
        agreement = mask_agreement(float_model, quantized.model, held_out)
        print(f"{name:40s} crops {quantized.result.calibration_crops:4d}  {time.perf_counter() - started:5.1f} s  "
              f"mean IoU {agreement['mean_iou']:.4f}  min IoU {agreement['min_iou']:.4f}  n {agreement['crops']}",
              flush=True)


if __name__ == "__main__":
    main()
