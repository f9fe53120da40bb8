"""Small, valid inputs that the hostile-input tests and the fuzz suite start from and damage."""

import json
from pathlib import Path

import numpy as np


def tiny_coco(folder: Path):
    """Two real (PNG / JPEG) photos and a COCO file with a polygon, an uncompressed and a
    compressed RLE annotation; returns (annotations path, images folder, the document)."""
    from PIL import Image
    from pycocotools import mask as mask_utils

    images = folder / "images"
    images.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    Image.fromarray(rng.integers(0, 255, (30, 40, 3), dtype=np.uint8)).save(images / "a.png")
    Image.fromarray(rng.integers(0, 255, (24, 32, 3), dtype=np.uint8)).save(images / "b.jpg", quality=90)
    mask = np.zeros((24, 32), np.uint8)
    mask[4:15, 6:20] = 1
    compressed = mask_utils.encode(np.asfortranarray(mask))
    flat = mask.flatten(order="F")
    changes = np.flatnonzero(np.diff(np.concatenate([[0], flat, [2]])) != 0)
    uncompressed = np.diff(np.concatenate([[0], changes])).tolist()
    uncompressed[-1] = len(flat) - sum(uncompressed[:-1])
    doc = {
        "images": [
            {"id": 1, "file_name": "a.png", "width": 40, "height": 30},
            {"id": 2, "file_name": "b.jpg", "width": 32, "height": 24},
        ],
        "annotations": [
            {"id": 10, "image_id": 1, "category_id": 1, "iscrowd": 0, "bbox": [5, 5, 20, 10], "area": 200,
             "segmentation": [[5, 5, 25, 5, 25, 15, 5, 15]]},
            {"id": 11, "image_id": 2, "category_id": 1, "iscrowd": 0, "bbox": [6, 4, 14, 11], "area": 154,
             "segmentation": {"size": [24, 32], "counts": uncompressed}},
            {"id": 12, "image_id": 2, "category_id": 1, "iscrowd": 0, "bbox": [6, 4, 14, 11], "area": 154,
             "segmentation": {"size": [24, 32], "counts": compressed["counts"].decode("ascii")}},
        ],
        "categories": [{"id": 1, "name": "thing"}],
    }
    path = folder / "annotations.json"
    path.write_text(json.dumps(doc))
    return path, images, doc
