"""sha256 digests of files and bytes, the one way every stage names content.

Checkpoints, downloaded packages, teacher models, firmware and cache keys are all
identified by sha256; one helper keeps the chunked file read (weights and firmware are
megabytes, COCO-sized inputs gigabytes) in one place. Ground floor: imports no stage.
"""

from __future__ import annotations

import hashlib
import json
import os
from typing import Any, Union

PathLike = Union[str, "os.PathLike[str]"]
_CHUNK = 1 << 20


def sha256_of(path: PathLike) -> str:
    """Hex sha256 of a file's contents, read in 1 MiB chunks."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(_CHUNK), b""):
            digest.update(chunk)
    return digest.hexdigest()


def sha256_bytes(data: bytes) -> str:
    """Hex sha256 of ``data``."""
    return hashlib.sha256(data).hexdigest()


def sha256_json(value: Any) -> str:
    """Hex sha256 of ``value`` as canonical JSON (sorted keys): a cache key from plain facts."""
    return sha256_bytes(json.dumps(value, sort_keys=True).encode())
