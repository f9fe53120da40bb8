"""Instances on unlabelled photographs: SAM-style automatic masks from the teacher.

The teacher is clicked on a grid of points; confident, stable masks of a sensible size are
kept, best first, dropping any that overlap a kept one too much. The result is a COCO-format
instances file (compressed RLE through pycocotools) that records the teacher and the
settings, so a training set is reproducible. With several workers, each process builds its
own single-threaded teacher and the photos are spread over them; the file is the same for
any number of workers.
"""

from __future__ import annotations

import multiprocessing
import queue
from dataclasses import dataclass
from pathlib import Path
from typing import Dict, Iterator, List, Sequence, Tuple

import numpy as np

from ..atomic import write_json
from ..errors import PicosamError
from ..images import load_image_rgb
from ..metrics import mask_iou
from .teacher import OnnxSamTeacher


@dataclass(frozen=True)
class ProposalSettings:
    points_per_side: int = 8  # a points_per_side x points_per_side grid of foreground clicks
    min_score: float = 0.85  # the decoder's predicted IoU
    min_stability: float = 0.85  # IoU of the masks at logit thresholds -1 and +1
    min_area_fraction: float = 0.002
    max_area_fraction: float = 0.6
    max_overlap: float = 0.7  # mask IoU above which a lower-scoring proposal is dropped
    max_per_image: int = 40


def propose_image(teacher: OnnxSamTeacher, image_rgb: np.ndarray, settings: ProposalSettings) -> List[Tuple[np.ndarray, float]]:
    """SAM-style automatic masks: click a grid, keep confident, stable, distinct masks."""
    height, width = image_rgb.shape[:2]
    n = settings.points_per_side
    candidates: List[Tuple[np.ndarray, float]] = []
    for gy in range(n):
        for gx in range(n):
            point = ((gx + 0.5) * width / n, (gy + 0.5) * height / n)
            logits, score = teacher.full_logits_for_point(image_rgb, point)
            if score < settings.min_score:
                continue
            mask = logits > 0
            area = mask.sum() / mask.size
            if not settings.min_area_fraction <= area <= settings.max_area_fraction:
                continue
            stability = mask_iou(logits > 1.0, logits > -1.0)
            if stability < settings.min_stability:
                continue
            candidates.append((mask, score * stability))
    candidates.sort(key=lambda c: -c[1])
    kept: List[Tuple[np.ndarray, float]] = []
    for mask, quality in candidates:
        if all(mask_iou(mask, other) <= settings.max_overlap for other, _ in kept):
            kept.append((mask, quality))
        if len(kept) >= settings.max_per_image:
            break
    return kept


def _propose_file(teacher, path: Path, settings: ProposalSettings) -> Tuple[int, int, List[Dict]]:
    """One photo's proposals as (width, height, [{segmentation RLE, bbox, area, score}])."""
    from pycocotools import mask as mask_utils

    image = load_image_rgb(Path(path))
    height, width = image.shape[:2]
    found = []
    for mask, quality in propose_image(teacher, image, settings):
        rle = mask_utils.encode(np.asfortranarray(mask.astype(np.uint8)))
        bbox = [float(v) for v in mask_utils.toBbox(rle)]
        rle["counts"] = rle["counts"].decode("ascii")
        found.append({"segmentation": rle, "area": float(mask.sum()), "bbox": bbox, "score": round(quality, 4)})
    return width, height, found


def _worker(teacher_dir: str, settings: ProposalSettings, jobs, results) -> None:
    """One worker process: its own single-threaded teacher (ONNX sessions do not survive
    pickling), built once and kept in this function's frame, then photos until ``None``."""
    try:
        teacher = OnnxSamTeacher.from_dir(Path(teacher_dir), threads=1)
    except Exception as err:  # reported to the parent, which raises it
        results.put((None, None, err))
        return
    for index, path in iter(jobs.get, None):
        try:
            results.put((index, _propose_file(teacher, Path(path), settings), None))
        except Exception as err:  # an unreadable photo: the parent raises its one-line error
            results.put((index, None, err))


def _propose_in_workers(paths: Sequence[Path], teacher_dir: Path, settings: ProposalSettings,
                        workers: int) -> Iterator[Tuple[int, int, List[Dict]]]:
    """``_propose_file`` for every path, spread over ``workers`` processes, yielded in order."""
    context = multiprocessing.get_context("spawn")
    jobs, results = context.Queue(), context.Queue()
    processes = [context.Process(target=_worker, args=(str(teacher_dir), settings, jobs, results), daemon=True)
                 for _ in range(workers)]
    for process in processes:
        process.start()
    for index, path in enumerate(paths):
        jobs.put((index, str(path)))
    for _ in processes:
        jobs.put(None)
    done: Dict[int, Tuple[int, int, List[Dict]]] = {}
    try:
        for wanted in range(len(paths)):
            while wanted not in done:
                try:
                    index, found, error = results.get(timeout=5)
                except queue.Empty:
                    if not any(process.is_alive() for process in processes):
                        raise PicosamError("proposal workers ended without finishing (out of memory?)") from None
                    continue
                if error is not None:
                    raise error
                done[index] = found
            yield done.pop(wanted)
    finally:
        for process in processes:
            if process.is_alive():
                process.terminate()
            process.join()


def propose_instances(image_paths: Sequence[Path], teacher: OnnxSamTeacher, out_path: Path,
                      settings: ProposalSettings = ProposalSettings(), progress: bool = True,
                      workers: int = 1) -> Dict[str, int]:
    """Write a COCO-format instances file of automatic teacher masks for unlabelled photos.

    Masks are stored as compressed RLE through pycocotools; boxes are the masks' tight
    boxes. The file records the teacher and settings, so the training set is reproducible.
    ``workers`` > 1 spreads the photos over that many processes with one thread each
    (a decoder call is too small to use many threads); the file is the same either way.
    """
    from tqdm import tqdm

    if workers > 1 and getattr(teacher, "folder", None) is None:
        raise PicosamError("proposals with several workers need an ONNX teacher loaded from a folder")
    paths = [Path(p) for p in image_paths]
    bar = tqdm(total=len(paths), desc="proposals", unit="image", disable=not progress)
    if workers > 1:
        results = _propose_in_workers(paths, teacher.folder, settings, workers)
    else:
        results = (_propose_file(teacher, path, settings) for path in paths)
    images, annotations = [], []
    try:
        for image_id, (path, (width, height, found)) in enumerate(zip(paths, results), start=1):
            images.append({"id": image_id, "file_name": path.name, "width": width, "height": height})
            for proposal in found:
                annotations.append({"id": len(annotations) + 1, "image_id": image_id, "category_id": 1, "iscrowd": 0,
                                    **proposal})
            bar.update()
    finally:
        bar.close()
        results.close()  # with workers: stops them if the loop ended early
    document = {
        "info": {"description": "automatic instance proposals", "teacher": teacher.identity,
                 "settings": settings.__dict__},
        "images": images, "annotations": annotations,
        "categories": [{"id": 1, "name": "object", "supercategory": "object"}],
    }
    write_json(Path(out_path), document)
    return {"images": len(images), "instances": len(annotations)}
