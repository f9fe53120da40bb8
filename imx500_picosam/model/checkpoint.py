"""Checkpoints: a Keras weights file plus a JSON sidecar that says what the weights are.

``NAME.weights.h5`` holds the weights; ``NAME.json`` beside it records the architecture,
the input contract and the provenance — ``trained``, ``imported`` or ``initialised`` —
with the weights' sha256, so a build can never present random weights as a trained model.
"""

from __future__ import annotations

import json
import os
import shutil
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable, Dict, Optional

from ..errors import PicosamError
from ..geometry import LEGACY_ROI_RULE, ROI_RULES, check_rule
from ..hashing import sha256_of

SIDECAR_FORMAT = "imx500-picosam-checkpoint/1"
WEIGHTS_SUFFIX = ".weights.h5"
PROVENANCE_KINDS = ("trained", "imported", "initialised")
INPUT_CONTRACT = "RGB float32 in [0, 1) (uint8 / 256), 96x96x3, no normalisation"
OUTPUT_CONTRACT = "mask logits 96x96x1 (mask = logit > 0)"
# The trained checkpoint that ships with the package and that builds, the predictor and
# the emulator use when no checkpoint is named (see docs/results.md for how it was made).
DEFAULT_CHECKPOINT = Path(__file__).resolve().parents[1] / "checkpoints" / "picosam3_coco_warp.weights.h5"


@dataclass
class Provenance:
    kind: str  # one of PROVENANCE_KINDS
    details: Dict[str, Any] = field(default_factory=dict)


@dataclass
class Checkpoint:
    weights_path: Path
    architecture: str
    provenance: Provenance
    weights_sha256: str
    parameters: int
    input_normalisation: bool = False  # the model starts with an affine input map
    # How a box prompt becomes the model's input crop (geometry.ROI_RULES): the rule the model
    # was trained with, which every consumer follows. Sidecars without it are the authors' rule.
    roi_rule: str = LEGACY_ROI_RULE

    @property
    def sidecar_path(self) -> Path:
        return sidecar_path_for(self.weights_path)

    def describe(self) -> str:
        return f"{self.weights_path.name} ({self.architecture}, {self.provenance.kind})"


def sidecar_path_for(weights_path: Path) -> Path:
    name = weights_path.name
    stem = name[: -len(WEIGHTS_SUFFIX)] if name.endswith(WEIGHTS_SUFFIX) else weights_path.stem
    return weights_path.with_name(stem + ".json")


def save_checkpoint(model, weights_path: Path, provenance: Provenance, roi_rule: str = LEGACY_ROI_RULE) -> Checkpoint:
    """Save ``model``'s weights and sidecar atomically as a pair; returns the loaded description.
    ``roi_rule`` is the ROI rule the weights were trained with (imports and initialisations: the
    authors' ``square``)."""
    from .network import count_parameters, has_input_normalisation

    weights_path = Path(weights_path)
    if not weights_path.name.endswith(WEIGHTS_SUFFIX):
        raise PicosamError(f"{weights_path}: checkpoint weights must be named *{WEIGHTS_SUFFIX}")
    if provenance.kind not in PROVENANCE_KINDS:
        raise PicosamError(f"provenance '{provenance.kind}' is not one of {PROVENANCE_KINDS}")
    check_rule(roi_rule)

    def describe(digest: str) -> Checkpoint:
        return Checkpoint(
            weights_path=weights_path,
            architecture=model.name,
            provenance=provenance,
            weights_sha256=digest,
            parameters=count_parameters(model),
            input_normalisation=has_input_normalisation(model),
            roi_rule=roi_rule,
        )

    return write_pair(weights_path, lambda tmp: model.save_weights(str(tmp)), describe)


def previous_weights_path(weights_path: Path) -> Path:
    """Where the pair being replaced is kept while a save switches to the new one."""
    return weights_path.with_name(f".{sidecar_path_for(weights_path).stem}.previous{WEIGHTS_SUFFIX}")


def write_pair(weights_path: Path, write_weights: Callable[[Path], None],
               describe: Callable[[str], Checkpoint]) -> Checkpoint:
    """Replace the pair at ``weights_path`` so that at every instant a valid pair can be read.

    A weights file and its sidecar cannot be renamed together in one step. So both new
    files are written completely under temporary names first; if an old valid pair
    exists, it is kept (hard links, else a copy) as ``.NAME.previous.*``; then the two
    renames; then the kept pair is dropped. A run killed between the two renames leaves a
    mismatched pair, and :func:`read_checkpoint` then reads the kept previous pair.
    """
    from ..atomic import publish, temporary_beside

    sidecar = sidecar_path_for(weights_path)
    with temporary_beside(weights_path, suffix=WEIGHTS_SUFFIX) as tmp_weights, \
            temporary_beside(sidecar, suffix=".json") as tmp_sidecar:
        write_weights(tmp_weights)
        checkpoint = describe(sha256_of(tmp_weights))
        tmp_sidecar.write_text(json.dumps(_sidecar(checkpoint), indent=2) + "\n")
        _keep_previous_pair(weights_path)
        publish(tmp_weights, weights_path)
        publish(tmp_sidecar, sidecar)
    _drop_previous_pair(weights_path)
    return checkpoint


def _keep_previous_pair(weights_path: Path) -> None:
    previous = previous_weights_path(weights_path)
    try:
        _read_pair(weights_path)
    except PicosamError:
        return  # no valid pair now: whatever previous pair an interrupted save kept stays
    _drop_previous_pair(weights_path)
    for source, target in ((weights_path, previous), (sidecar_path_for(weights_path), sidecar_path_for(previous))):
        try:
            os.link(source, target)
        except OSError:  # a file system without hard links
            shutil.copyfile(source, target)


def _drop_previous_pair(weights_path: Path) -> None:
    previous = previous_weights_path(weights_path)
    for path in (sidecar_path_for(previous), previous):  # the sidecar first: no half pair looks valid
        if path.exists():
            path.unlink()


def _sidecar(checkpoint: Checkpoint) -> Dict[str, Any]:
    return {
        "format": SIDECAR_FORMAT,
        "architecture": checkpoint.architecture,
        "input": {"shape": [96, 96, 3], "contract": INPUT_CONTRACT},
        "output": {"shape": [96, 96, 1], "contract": OUTPUT_CONTRACT},
        "parameters": checkpoint.parameters,
        "input_normalisation": checkpoint.input_normalisation,
        "roi_rule": checkpoint.roi_rule,
        "weights_file": checkpoint.weights_path.name,
        "weights_sha256": checkpoint.weights_sha256,
        "provenance": asdict(checkpoint.provenance),
    }


def read_checkpoint(path: Path) -> Checkpoint:
    """Read and verify a checkpoint given by its weights file or its sidecar.

    Where the pair does not verify but a save was interrupted while switching pairs, the
    previous pair it kept (``.NAME.previous.*``) is read instead.
    """
    path = Path(path)
    weights_path = path.with_name(path.stem + WEIGHTS_SUFFIX) if path.suffix == ".json" else path
    try:
        return _read_pair(weights_path)
    except PicosamError:
        previous = previous_weights_path(weights_path)
        if previous.is_file():
            try:
                return _read_pair(previous)
            except PicosamError:
                pass
        raise


def _read_pair(weights_path: Path) -> Checkpoint:
    sidecar = sidecar_path_for(weights_path)
    if not weights_path.is_file():
        raise PicosamError(f"{weights_path}: checkpoint weights file not found")
    if not sidecar.is_file():
        raise PicosamError(f"{sidecar}: checkpoint sidecar not found (expected beside {weights_path.name})")
    try:
        meta = json.loads(sidecar.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise PicosamError(f"{sidecar}: not valid JSON ({err.__class__.__name__})") from None
    if not isinstance(meta, dict) or meta.get("format") != SIDECAR_FORMAT:
        raise PicosamError(f"{sidecar}: not an imx500-picosam checkpoint sidecar (format {SIDECAR_FORMAT})")
    provenance = meta.get("provenance") or {}
    if not isinstance(provenance, dict) or provenance.get("kind") not in PROVENANCE_KINDS:
        raise PicosamError(f"{sidecar}: provenance kind must be one of {PROVENANCE_KINDS}")
    digest = sha256_of(weights_path)
    if digest != meta.get("weights_sha256"):
        raise PicosamError(f"{weights_path}: sha256 {digest[:12]}… does not match its sidecar")
    parameters = meta.get("parameters", 0)
    if not isinstance(parameters, int) or isinstance(parameters, bool):
        raise PicosamError(f"{sidecar}: parameters is {str(parameters)[:20]!r}, not an integer")
    roi_rule = meta.get("roi_rule", LEGACY_ROI_RULE)
    if roi_rule not in ROI_RULES:
        raise PicosamError(f"{sidecar}: roi_rule is {str(roi_rule)[:20]!r}, not one of {', '.join(ROI_RULES)}")
    return Checkpoint(
        weights_path=weights_path,
        architecture=str(meta.get("architecture")),
        provenance=Provenance(kind=provenance["kind"], details=provenance.get("details", {})),
        weights_sha256=digest,
        parameters=parameters,
        input_normalisation=bool(meta.get("input_normalisation", False)),
        roi_rule=roi_rule,
    )


def load_model(checkpoint: Checkpoint):
    """Build the checkpoint's architecture and load its weights."""
    from .network import ARCHITECTURES, build_model

    if checkpoint.architecture not in ARCHITECTURES:
        raise PicosamError(f"{checkpoint.sidecar_path}: unknown architecture '{checkpoint.architecture}'")
    model = build_model(checkpoint.architecture, input_normalisation=checkpoint.input_normalisation)
    try:
        model.load_weights(str(checkpoint.weights_path))
    except (ValueError, OSError, KeyError) as err:
        first_line = str(err).strip().splitlines()[0] if str(err).strip() else err.__class__.__name__
        raise PicosamError(f"{checkpoint.weights_path}: cannot load weights: {first_line}") from None
    return model


def initialise_checkpoint(weights_path: Path, architecture: str = "picosam3", seed: int = 0) -> Checkpoint:
    """Write a seeded, *untrained* initialisation (Keras default initialisers)."""
    import tensorflow as tf

    from .network import build_model

    tf.keras.utils.set_random_seed(seed)
    model = build_model(architecture)
    return save_checkpoint(
        model,
        weights_path,
        Provenance(kind="initialised", details={"seed": seed, "note": "untrained: masks are meaningless"}),
    )


def default_checkpoint() -> Optional[Checkpoint]:
    """The shipped trained checkpoint, or None where this copy of the package has none."""
    if DEFAULT_CHECKPOINT.is_file() and sidecar_path_for(DEFAULT_CHECKPOINT).is_file():
        return read_checkpoint(DEFAULT_CHECKPOINT)
    return None
