"""A contact sheet: what the model segments, next to the human mask, on real instances.

Numbers say how often a model is right; a sheet of crops says *how* it is wrong (a bus
cut into a stripe, a mask spilling onto a neighbour), which is what a user sees first.
Each tile is the 96x96 ROI crop the network sees, the human mask's outline in green, the
prediction filled in magenta, and the crop IoU of the prediction and of the filled box.
"""

from __future__ import annotations

from pathlib import Path
from typing import List

import numpy as np

from ..errors import PicosamError


def pick_instances(instances, count: int, seed: int = 0) -> List:
    """``count`` instances spread over the small / medium / large buckets (a third each
    where the set allows), drawn with a seeded generator: the same sheet every time."""
    from .data import size_bucket

    rng = np.random.default_rng(seed)
    by_bucket = {b: [i for i in instances.instances if size_bucket(i.area) == b] for b in ("small", "medium", "large")}
    chosen: List = []
    for k, bucket in enumerate(("small", "medium", "large")):
        pool = by_bucket[bucket]
        want = min(len(pool), (count - len(chosen)) // (3 - k))
        chosen += [pool[j] for j in sorted(rng.choice(len(pool), want, replace=False))] if want else []
    return chosen


def contact_sheet(instances, predict_crops, out_png: Path, count: int = 24, columns: int = 6, seed: int = 0,
                  title: str = "", *, rule: str) -> List[float]:
    """Draw the sheet to ``out_png`` (atomically); returns the model's crop IoUs, tile by tile.

    ``predict_crops`` maps uint8 (N, 96, 96, 3) crops to (N, 96, 96) logits; each tile is the
    crop the model sees under its ROI rule ``rule`` (a ``warp`` tile is the stretched box)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from ..atomic import atomic_path
    from .data import crop_instance
    from .evaluate import _box_pixels
    from ..geometry import crop_mask_to_model_input
    from ..images import load_image_rgb
    from ..metrics import mask_iou

    chosen = pick_instances(instances, count, seed)
    if not chosen:
        raise PicosamError(f"{instances.annotations_path}: no instance to draw")
    crops = [crop_instance(load_image_rgb(inst.image_path), instances.decode_mask(inst), inst.box_xywh, rule=rule)
             for inst in chosen]
    logits = np.asarray(predict_crops(np.stack([c.image for c in crops]))).reshape(len(crops), 96, 96)
    rows = -(-len(crops) // columns)
    fig, axes = plt.subplots(rows, columns, figsize=(1.9 * columns, 2.1 * rows), dpi=110, squeeze=False)
    ious: List[float] = []
    for ax in axes.ravel():
        ax.axis("off")
    for ax, inst, crop, logit in zip(axes.ravel(), chosen, crops, logits):
        pred = logit > 0
        height, width = inst.image_height, inst.image_width
        box = np.zeros((height, width), dtype=bool)
        x0, y0, x1, y1 = _box_pixels(inst.box_xywh, width, height)  # the filled box exactly as `evaluate` scores it
        box[y0:y1, x0:x1] = True
        box_iou = mask_iou(crop_mask_to_model_input(box, crop.roi), crop.mask)
        ious.append(mask_iou(pred, crop.mask))
        overlay = crop.image.astype(np.float32)
        overlay[pred] = 0.55 * overlay[pred] + 0.45 * np.array([255, 0, 255])
        ax.imshow(overlay.astype(np.uint8))
        ax.contour(crop.mask.astype(float), levels=[0.5], colors="lime", linewidths=0.8)
        ax.set_title(f"IoU {ious[-1]:.2f} (box {box_iou:.2f})", fontsize=7)
    fig.suptitle(title or f"{Path(str(instances.annotations_path)).name}: green = human mask, magenta = prediction",
                 fontsize=8)
    fig.tight_layout()
    with atomic_path(out_png, suffix=".png") as tmp:
        fig.savefig(tmp, format="png")
    plt.close(fig)
    return ious
