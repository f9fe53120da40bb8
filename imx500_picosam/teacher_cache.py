"""The teacher's answers for a whole dataset, computed once and read by training.

:class:`TeacherCache` keeps one file per image (its instances' 96x96 ROI logits and scores);
:func:`fill_cache` computes what is missing, sharded over machines by image, resumable, and
recomputes corrupt or incomplete files. Any teacher of :mod:`.teacher` can fill it.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Dict, Optional, Sequence

import numpy as np

from .atomic import atomic_path, write_json
from .errors import PicosamError
from .geometry import MODEL_INPUT_SIZE
from .images import ImageCache, LruCache
from .teacher import TeacherOutput


@dataclass(frozen=True)
class CacheEntry:
    logits: np.ndarray  # (96, 96) float32 (stored as float16)
    score: float


class TeacherCache:
    """Teacher outputs for a dataset: ``DIR/<image_id>.npz`` with the image's instances.

    Each file holds ``annotation_ids``, ``logits`` (n, 96, 96) float16, ``scores`` (n,) and
    a checksum of both arrays, and is written under a temporary name and renamed, so a run
    killed at any point leaves only whole files. ``DIR/cache.json`` names the teacher; a
    cache made by another teacher is refused rather than mixed.
    """

    FORMAT = "imx500-picosam-teacher-cache/1"

    def __init__(self, folder: Path):
        self.folder = Path(folder)
        # Training draws instances in random order: keep recently read images' entries, so an
        # example does not re-read and re-verify its image's whole file.
        self._loaded = LruCache(self._read_for_lookup, capacity=256)

    def path_for(self, image_id: int) -> Path:
        return self.folder / f"{int(image_id)}.npz"

    def bind(self, teacher_identity: str) -> None:
        """Create the cache for ``teacher_identity`` or check that it was made by it."""
        meta_path = self.folder / "cache.json"
        if meta_path.is_file():
            meta = json.loads(meta_path.read_text())
            if meta.get("teacher") != teacher_identity:
                raise PicosamError(
                    f"{self.folder}: teacher cache was made by {meta.get('teacher')}, not {teacher_identity}; use another folder"
                )
            return
        self.folder.mkdir(parents=True, exist_ok=True)
        write_json(meta_path, {"format": self.FORMAT, "teacher": teacher_identity, "size": MODEL_INPUT_SIZE})

    @staticmethod
    def _checksum(logits: np.ndarray, scores: np.ndarray, annotation_ids: np.ndarray) -> str:
        digest = hashlib.sha256()
        for array in (annotation_ids.astype(np.int64), logits.astype(np.float16), scores.astype(np.float32)):
            digest.update(np.ascontiguousarray(array).tobytes())
        return digest.hexdigest()

    def write(self, image_id: int, annotation_ids: Sequence[int], outputs: Sequence[TeacherOutput]) -> None:
        ids = np.asarray(annotation_ids, dtype=np.int64)
        logits = np.stack([o.logits for o in outputs]).astype(np.float16)
        scores = np.asarray([o.score for o in outputs], dtype=np.float32)
        with atomic_path(self.path_for(image_id), suffix=".npz") as tmp:
            with open(tmp, "wb") as handle:
                np.savez(handle, annotation_ids=ids, logits=logits, scores=scores,
                         checksum=np.array(self._checksum(logits, scores, ids)))

    def read_image(self, image_id: int, expected_ids: Optional[Sequence[int]] = None) -> Optional[Dict[int, CacheEntry]]:
        """The entries of one image, or None when missing, corrupt or incomplete."""
        path = self.path_for(image_id)
        if not path.is_file():
            return None
        try:
            with np.load(path) as data:
                ids, logits, scores = data["annotation_ids"], data["logits"], data["scores"]
                checksum = str(data["checksum"])
        except Exception:  # a truncated or foreign file: np.load raises many kinds
            return None
        if logits.shape != (len(ids), MODEL_INPUT_SIZE, MODEL_INPUT_SIZE) or scores.shape != (len(ids),):
            return None
        if checksum != self._checksum(logits, scores, ids):
            return None
        if expected_ids is not None and set(int(i) for i in ids) != set(int(i) for i in expected_ids):
            return None
        return {int(i): CacheEntry(logits[k].astype(np.float32), float(scores[k])) for k, i in enumerate(ids)}

    def _read_for_lookup(self, image_id: int) -> Dict[int, CacheEntry]:
        entries = self.read_image(image_id)
        if entries is None:
            raise PicosamError(f"{self.path_for(image_id)}: teacher cache entry missing or corrupt (run `picosam teacher cache`)")
        return entries

    def lookup(self, instance) -> CacheEntry:
        try:
            return self._loaded.get(instance.image_id)[instance.annotation_id]
        except KeyError:
            raise PicosamError(f"{self.path_for(instance.image_id)}: no teacher entry for annotation {instance.annotation_id}") from None


@dataclass(frozen=True)
class CacheRunSummary:
    images_total: int  # images of this shard
    images_computed: int
    images_reused: int
    images_repaired: int  # corrupt or incomplete files recomputed
    instances_computed: int
    seconds: float


def fill_cache(instances, teacher, cache: TeacherCache, rank: int = 0, world_size: int = 1,
               progress: bool = True) -> CacheRunSummary:
    """Compute what is missing for this shard (images ``i`` with ``i % world_size == rank``)."""
    import time

    from tqdm import tqdm

    if world_size < 1 or not 0 <= rank < world_size:
        raise PicosamError(f"--rank {rank} / --world-size {world_size}: need 0 <= rank < world-size")
    cache.bind(teacher.identity)
    grouped = instances.by_image()
    image_ids = [image_id for k, image_id in enumerate(grouped) if k % world_size == rank]
    started = time.perf_counter()
    computed = reused = repaired = instance_count = 0
    images = ImageCache(capacity=2)
    for image_id in tqdm(image_ids, desc=f"teacher cache {rank}/{world_size}", unit="image", disable=not progress):
        members = grouped[image_id]
        ids = [m.annotation_id for m in members]
        if cache.read_image(image_id, ids) is not None:
            reused += 1
            continue
        if cache.path_for(image_id).exists():
            repaired += 1
        image = images.get(members[0].image_path)
        outputs = [teacher.predict(image, m.box_xywh) for m in members]
        cache.write(image_id, ids, outputs)
        computed += 1
        instance_count += len(members)
    return CacheRunSummary(len(image_ids), computed, reused, repaired, instance_count, time.perf_counter() - started)
