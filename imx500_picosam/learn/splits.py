"""Stage helper: a fixed train / validation split of a COCO-format instances file, by image.

Model selection needs images the model never trained on. The split is by *image* (all
instances of a photo fall on one side, so a validation object is never seen through a
neighbour's crop), is written down in the repository (``training_data/coco-subset-val-ids.txt``)
so every run and every report uses the same one, and is applied by writing two plain COCO
files that every command reads as it reads any other. Images whose ids appear in an
``exclude`` list (COCO val2017, on which the paper is judged) are dropped from both sides.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, List, Sequence, Set

from ..errors import PicosamError
from .sources import PROJECT_DATA

COCO_SUBSET_VAL_IDS = PROJECT_DATA / "coco-subset-val-ids.txt"


@dataclass(frozen=True)
class SplitSummary:
    train_path: Path
    val_path: Path
    train_images: int
    train_instances: int
    val_images: int
    val_instances: int
    excluded_images: int


def read_id_list(path: Path) -> Set[int]:
    """Image ids, one a line; ``#`` starts a comment."""
    path = Path(path)
    if not path.is_file():
        raise PicosamError(f"{path}: id list not found")
    ids: Set[int] = set()
    for number, line in enumerate(path.read_text().splitlines(), 1):
        text = line.split("#", 1)[0].strip()
        if not text:
            continue
        try:
            ids.add(int(text))
        except ValueError:
            raise PicosamError(f"{path}:{number}: '{text}' is not an image id") from None
    return ids


def choose_validation_ids(image_ids: Iterable[int], fraction: float, salt: str = "picosam-val") -> List[int]:
    """A deterministic ``fraction`` of the images: those whose salted sha256 sorts first.

    Depends only on the ids themselves, so the same images are chosen on any machine and the
    choice does not move when images are added elsewhere in the list."""
    ids = sorted(set(int(i) for i in image_ids))
    count = max(1, round(fraction * len(ids)))
    ranked = sorted(ids, key=lambda i: hashlib.sha256(f"{salt}:{i}".encode()).hexdigest())
    return sorted(ranked[:count])


def _subset(data: dict, keep: Set[int]) -> dict:
    out = {k: v for k, v in data.items() if k not in ("images", "annotations")}
    out["images"] = sorted((img for img in data["images"] if img.get("id") in keep), key=lambda img: img["id"])
    # Sorted by image: evaluation and the teacher cache then meet each photo once.
    out["annotations"] = sorted((a for a in data["annotations"] if a.get("image_id") in keep),
                                key=lambda a: (a.get("image_id"), a.get("id")))
    return out


def split_annotations(annotations: Path, val_ids: Set[int], out_dir: Path,
                      exclude_ids: Sequence[Set[int]] = ()) -> SplitSummary:
    """Write ``out_dir/train.json`` and ``out_dir/val.json`` (COCO format, sorted by image)."""
    from ..atomic import write_json

    annotations = Path(annotations)
    try:
        data = json.loads(annotations.read_text())
    except FileNotFoundError:
        raise PicosamError(f"{annotations}: annotation file not found") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise PicosamError(f"{annotations}: not valid JSON ({err.__class__.__name__})") from None
    if not isinstance(data, dict) or not isinstance(data.get("images"), list) or not isinstance(data.get("annotations"), list):
        raise PicosamError(f"{annotations}: not a COCO instances file (needs 'images' and 'annotations' lists)")
    all_ids = {img.get("id") for img in data["images"]}
    missing = sorted(val_ids - all_ids)
    if missing:
        raise PicosamError(f"{annotations}: {len(missing)} validation image ids are not in the file (first: {missing[0]})")
    excluded: Set[int] = set().union(*exclude_ids) if exclude_ids else set()
    dropped = all_ids & excluded
    train_ids = all_ids - val_ids - excluded
    val_keep = val_ids - excluded
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    train, val = _subset(data, train_ids), _subset(data, val_keep)
    write_json(out_dir / "train.json", train)
    write_json(out_dir / "val.json", val)
    return SplitSummary(out_dir / "train.json", out_dir / "val.json", len(train["images"]), len(train["annotations"]),
                        len(val["images"]), len(val["annotations"]), len(dropped))
