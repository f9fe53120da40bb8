"""The checkpoint front door: what ``--checkpoint`` means for every command.

``build``, ``demo --emulate``, ``segment``, ``evaluate`` and ``train --init`` all turn the
option into a :class:`~imx500_picosam.model.checkpoint.Checkpoint` here, so the same value works
everywhere:

- no value: the trained checkpoint that ships with the package
  (:data:`~imx500_picosam.model.checkpoint.DEFAULT_CHECKPOINT`); in a copy of the package without
  it, a seeded, *untrained* initialisation, made once and flagged ``initialised`` so every
  command warns (:data:`UNTRAINED_WARNING`);
- ``NAME.weights.h5`` (or its ``NAME.json`` sidecar): that checkpoint, verified against its
  sidecar;
- a folder, as written by ``picosam import-weights --out DIR`` or ``picosam train --out DIR``:
  the one checkpoint in it;
- the authors' PyTorch ``*.pt``: imported once (into ``work_dir``, by default the user cache,
  keyed by the file's sha256) and reused from then on.

This module sits above both :mod:`.checkpoint` and :mod:`.import_weights`, which is why
neither of those needs the other's policy (the import loop they once had).
"""

from __future__ import annotations

from pathlib import Path
from typing import Optional

from .checkpoint import (
    WEIGHTS_SUFFIX,
    Checkpoint,
    default_checkpoint,
    initialise_checkpoint,
    read_checkpoint,
    sidecar_path_for,
)
from ..errors import PicosamError
from ..hashing import sha256_of
from .import_weights import import_checkpoint
from ..toolchain import user_cache_dir

UNTRAINED_WARNING = (
    "UNTRAINED MODEL: a seeded random initialisation, not a trained checkpoint; its masks are "
    "meaningless. Pass --checkpoint (make rpk: CHECKPOINT=...) to use a trained one."
)
INIT_NAME = "picosam3-init" + WEIGHTS_SUFFIX


def resolve_checkpoint(path: Optional[Path] = None, work_dir: Optional[Path] = None) -> Checkpoint:
    """The checkpoint ``--checkpoint path`` names (see the module's docstring for the rules).

    ``work_dir`` is where derived checkpoints are written (an imported ``.pt``, the fallback
    initialisation); ``picosam build`` keeps them inside its build folder, other commands
    in the user cache.
    """
    work_dir = Path(work_dir) if work_dir is not None else user_cache_dir() / "checkpoints"
    if path is None:
        shipped = default_checkpoint()
        if shipped is not None:
            return shipped
        init_path = work_dir / INIT_NAME
        if init_path.exists() and sidecar_path_for(init_path).exists():
            return read_checkpoint(init_path)
        return initialise_checkpoint(init_path)
    path = Path(path)
    if path.is_dir():
        return read_checkpoint(_the_checkpoint_in(path))
    if path.suffix == ".pt":
        return _imported(path, work_dir)
    if path.name.endswith(WEIGHTS_SUFFIX) or path.suffix == ".json":
        return read_checkpoint(path)
    if not path.exists():
        raise PicosamError(f"{path}: checkpoint not found")
    from firmware_packaging.files import describe_file

    raise PicosamError(
        f"{path}: is {describe_file(path)}, not a checkpoint (expected NAME{WEIGHTS_SUFFIX} with its NAME.json, "
        "a folder holding one, or the authors' PyTorch .pt)"
    )


def is_untrained(checkpoint: Checkpoint) -> bool:
    return checkpoint.provenance.kind == "initialised"


def _the_checkpoint_in(folder: Path) -> Path:
    found = sorted(p for p in folder.glob("*" + WEIGHTS_SUFFIX) if sidecar_path_for(p).is_file())
    if len(found) == 1:
        return found[0]
    if not found:
        raise PicosamError(f"{folder}: holds no checkpoint (NAME{WEIGHTS_SUFFIX} with its NAME.json)")
    names = ", ".join(p.name for p in found)
    raise PicosamError(f"{folder}: holds {len(found)} checkpoints ({names}); name one of them")


def _imported(pt_path: Path, work_dir: Path) -> Checkpoint:
    """``pt_path`` imported into ``work_dir/imported/<sha256>``, reused when already there."""
    if not pt_path.is_file():
        raise PicosamError(f"{pt_path}: checkpoint file not found")
    digest = sha256_of(pt_path)
    folder = work_dir / "imported" / digest[:16]
    try:
        previous = read_checkpoint(_the_checkpoint_in(folder)) if folder.is_dir() else None
    except PicosamError:  # a damaged earlier import is simply made again
        previous = None
    if previous is not None and previous.provenance.details.get("source_sha256") == digest:
        return previous
    return import_checkpoint(pt_path, folder)
