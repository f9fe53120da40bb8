"""The teacher's answers for a whole dataset, computed once and read by training.

:class:`TeacherCache` keeps one file per image (its instances' 96x96 ROI logits and scores);
:func:`fill_cache` computes what is missing, sharded over machines by image, resumable, and
recomputes corrupt, incomplete or stale files (an entry made for another teacher, photo or
box: see :func:`prompt_key`). Any teacher of :mod:`.teacher` can fill it.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Dict, List, Optional, Sequence

import numpy as np

from ..atomic import atomic_path, write_json
from ..errors import PicosamError
from ..geometry import LEGACY_ROI_RULE, MODEL_INPUT_SIZE, check_rule
from ..images import ImageCache, LruCache
from .teacher import TeacherOutput


@dataclass(frozen=True)
class CacheEntry:
    logits: np.ndarray  # (96, 96) float32 (stored as float16)
    score: float
    prompt_key: str = ""  # see TeacherCache.prompt_key


class TeacherCache:
    """Teacher outputs for a dataset: ``DIR/<image_id>.npz`` with the image's instances.

    Each file holds ``annotation_ids``, ``prompt_keys``, ``logits`` (n, 96, 96) float16,
    ``scores`` (n,) and a checksum of them all, and is written under a temporary name and
    renamed, so a run killed at any point leaves only whole files. ``DIR/cache.json`` names
    the teacher; a cache made by another teacher is refused rather than mixed.

    Ids alone do not say what the teacher was asked: ``teacher propose`` numbers its
    instances from 1 every time, and an edited annotation file keeps its ids. So every
    entry carries its :func:`prompt_key` — a digest of the teacher, the photo (name and
    size) and the prompt box — and an entry whose key differs is recomputed, never reused.
    (The teacher sees the photo and the box only: a mask changed under an unchanged box
    asks it the same question.)
    """

    FORMAT = "imx500-picosam-teacher-cache/2"

    def __init__(self, folder: Path):
        self.folder = Path(folder)
        self._identity: Optional[str] = None
        self._roi_rule: Optional[str] = None
        # Training draws instances in random order: keep recently read images' entries, so an
        # example does not re-read and re-verify its image's whole file.
        self._loaded = LruCache(self._read_for_lookup, capacity=256)

    def path_for(self, image_id: int) -> Path:
        return self.folder / f"{int(image_id)}.npz"

    def bind(self, teacher_identity: str, roi_rule: str) -> None:
        """Create the cache for ``teacher_identity`` with logits in ``roi_rule``'s ROI frame, or
        check that it was made so."""
        check_rule(roi_rule)
        meta_path = self.folder / "cache.json"
        if meta_path.is_file():
            meta = self._meta()
            if meta.get("teacher") != teacher_identity:
                raise PicosamError(
                    f"{self.folder}: teacher cache was made by {meta.get('teacher')}, not {teacher_identity}; use another folder"
                )
            made = meta.get("roi_rule", LEGACY_ROI_RULE)
            if made != roi_rule:
                raise PicosamError(f"{self.folder}: teacher cache holds logits in the '{made}' ROI frame, "
                                   f"not '{roi_rule}'; use another folder")
            self._identity, self._roi_rule = teacher_identity, roi_rule
            return
        self.folder.mkdir(parents=True, exist_ok=True)
        write_json(meta_path, {"format": self.FORMAT, "teacher": teacher_identity, "size": MODEL_INPUT_SIZE,
                               "roi_rule": roi_rule})
        self._identity, self._roi_rule = teacher_identity, roi_rule

    def _meta(self) -> Dict:
        meta_path = self.folder / "cache.json"
        try:
            meta = json.loads(meta_path.read_text())
        except FileNotFoundError:
            raise PicosamError(f"{self.folder}: not a teacher cache (no cache.json; run `picosam teacher cache`)") from None
        except (OSError, ValueError) as err:
            raise PicosamError(f"{meta_path}: unreadable ({err.__class__.__name__})") from None
        if not isinstance(meta, dict):
            raise PicosamError(f"{meta_path}: not a teacher cache description")
        return meta

    @property
    def identity(self) -> str:
        """The teacher that made this cache, as ``cache.json`` names it."""
        if self._identity is None:
            self._identity = str(self._meta().get("teacher"))
        return self._identity

    @property
    def roi_rule(self) -> str:
        """The ROI rule whose frame the logits are in (caches made before rules existed: ``square``)."""
        if self._roi_rule is None:
            self._roi_rule = check_rule(str(self._meta().get("roi_rule", LEGACY_ROI_RULE)))
        return self._roi_rule

    def prompt_key(self, instance) -> str:
        """What the teacher was asked for ``instance``: teacher, ROI frame, photo and box, as one digest."""
        return prompt_key(self.identity, instance, self.roi_rule)

    @staticmethod
    def _checksum(logits: np.ndarray, scores: np.ndarray, annotation_ids: np.ndarray, keys: np.ndarray) -> str:
        digest = hashlib.sha256()
        for array in (annotation_ids.astype(np.int64), logits.astype(np.float16), scores.astype(np.float32)):
            digest.update(np.ascontiguousarray(array).tobytes())
        digest.update("\n".join(str(k) for k in keys).encode())
        return digest.hexdigest()

    def write(self, image_id: int, annotation_ids: Sequence[int], outputs: Sequence[TeacherOutput],
              prompt_keys: Sequence[str]) -> None:
        ids = np.asarray(annotation_ids, dtype=np.int64)
        keys = np.asarray(list(prompt_keys), dtype="U64")
        logits = np.stack([o.logits for o in outputs]).astype(np.float16)
        scores = np.asarray([o.score for o in outputs], dtype=np.float32)
        with atomic_path(self.path_for(image_id), suffix=".npz") as tmp:
            with open(tmp, "wb") as handle:
                np.savez(handle, annotation_ids=ids, prompt_keys=keys, logits=logits, scores=scores,
                         checksum=np.array(self._checksum(logits, scores, ids, keys)))

    def read_image(self, image_id: int, expected: Optional[Dict[int, str]] = None) -> Optional[Dict[int, CacheEntry]]:
        """The entries of one image, or None when missing, corrupt, incomplete or stale.

        ``expected`` maps annotation id -> :meth:`prompt_key`; entries asked otherwise are stale.
        """
        path = self.path_for(image_id)
        if not path.is_file():
            return None
        try:
            with np.load(path) as data:
                ids, logits, scores = data["annotation_ids"], data["logits"], data["scores"]
                keys, checksum = data["prompt_keys"], str(data["checksum"])
        except Exception:  # a truncated, foreign or first-format file: np.load raises many kinds
            return None
        if logits.shape != (len(ids), MODEL_INPUT_SIZE, MODEL_INPUT_SIZE) or scores.shape != (len(ids),) \
                or keys.shape != (len(ids),):
            return None
        if checksum != self._checksum(logits, scores, ids, keys):
            return None
        stored = {int(i): str(k) for i, k in zip(ids, keys)}
        if expected is not None and stored != {int(i): k for i, k in expected.items()}:
            return None
        return {int(i): CacheEntry(logits[n].astype(np.float32), float(scores[n]), stored[int(i)])
                for n, i in enumerate(ids)}

    def _read_for_lookup(self, image_id: int) -> Dict[int, CacheEntry]:
        entries = self.read_image(image_id)
        if entries is None:
            raise PicosamError(f"{self.path_for(image_id)}: teacher cache entry missing or corrupt (run `picosam teacher cache`)")
        return entries

    def lookup(self, instance) -> CacheEntry:
        key = self.prompt_key(instance)
        entry = self._loaded.get(instance.image_id).get(instance.annotation_id)
        if entry is None or entry.prompt_key != key:
            # The file may have been recomputed since this process first read it.
            entry = self._loaded.put(instance.image_id, self._read_for_lookup(instance.image_id)).get(instance.annotation_id)
        if entry is None:
            raise PicosamError(f"{self.path_for(instance.image_id)}: no teacher entry for annotation {instance.annotation_id}")
        if entry.prompt_key != key:
            raise PicosamError(
                f"{self.path_for(instance.image_id)}: the teacher entry for annotation {instance.annotation_id} was "
                f"made for another box or photo (run `picosam teacher cache` again to recompute it)"
            )
        return entry

    def stale(self, instances) -> List[int]:
        """Annotation ids of ``instances`` whose entry is missing, corrupt or was made for another prompt."""
        bad: List[int] = []
        for image_id, members in instances.by_image().items():
            if self.read_image(image_id, {m.annotation_id: self.prompt_key(m) for m in members}) is None:
                bad += [m.annotation_id for m in members]
        return bad


def prompt_key(teacher_identity: str, instance, roi_rule: str = LEGACY_ROI_RULE) -> str:
    """A digest of what the teacher is asked: which teacher, which photo (file name and size),
    which box (exact float values) and, for any rule but the legacy ``square``, the ROI frame
    its logits are cut in (so ``square`` keys of older caches stay valid)."""
    box = [float(v).hex() for v in instance.box_xywh]
    fields = [teacher_identity, Path(instance.image_path).name, int(instance.image_width),
              int(instance.image_height), box]
    if roi_rule != LEGACY_ROI_RULE:
        fields.append(roi_rule)
    text = json.dumps(fields)
    return hashlib.sha256(text.encode()).hexdigest()[:32]


@dataclass(frozen=True)
class CacheRunSummary:
    images_total: int  # images of this shard
    images_computed: int
    images_reused: int
    images_repaired: int  # corrupt or incomplete files recomputed
    instances_computed: int
    seconds: float


def fill_cache(instances, teacher, cache: TeacherCache, rank: int = 0, world_size: int = 1,
               progress: bool = True, roi_rule: str = "warp") -> CacheRunSummary:
    """Compute what is missing for this shard (images ``i`` with ``i % world_size == rank``), with
    the teacher's logits cut in ``roi_rule``'s ROI (the rule of the student it will teach)."""
    import time

    from tqdm import tqdm

    if world_size < 1 or not 0 <= rank < world_size:
        raise PicosamError(f"--rank {rank} / --world-size {world_size}: need 0 <= rank < world-size")
    cache.bind(teacher.identity, roi_rule)
    grouped = instances.by_image()
    image_ids = [image_id for k, image_id in enumerate(grouped) if k % world_size == rank]
    started = time.perf_counter()
    computed = reused = repaired = instance_count = 0
    images = ImageCache(capacity=2)
    for image_id in tqdm(image_ids, desc=f"teacher cache {rank}/{world_size}", unit="image", disable=not progress):
        members = grouped[image_id]
        ids = [m.annotation_id for m in members]
        keys = [cache.prompt_key(m) for m in members]
        if cache.read_image(image_id, dict(zip(ids, keys))) is not None:
            reused += 1
            continue
        if cache.path_for(image_id).exists():
            repaired += 1  # corrupt, incomplete, or made for other boxes / photos
        image = images.get(members[0].image_path)
        outputs = [teacher.predict(image, m.box_xywh, cache.roi_rule) for m in members]
        cache.write(image_id, ids, outputs, keys)
        computed += 1
        instance_count += len(members)
    return CacheRunSummary(len(image_ids), computed, reused, repaired, instance_count, time.perf_counter() - started)
