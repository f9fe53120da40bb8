"""Checkpoints: a Keras weights file plus a JSON sidecar that says what the weights are.

``NAME.weights.h5`` holds the weights; ``NAME.json`` beside it records the architecture,
the input contract and the provenance — ``trained``, ``imported`` or ``initialised`` —
with the weights' sha256, so a build can never present random weights as a trained model.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Dict, Optional

from .atomic import atomic_path, write_json
from .errors import PicosamError
from .hashing import sha256_of

SIDECAR_FORMAT = "imx500-picosam-checkpoint/1"
WEIGHTS_SUFFIX = ".weights.h5"
PROVENANCE_KINDS = ("trained", "imported", "initialised")
INPUT_CONTRACT = "RGB float32 in [0, 1) (uint8 / 256), 96x96x3, no normalisation"
OUTPUT_CONTRACT = "mask logits 96x96x1 (mask = logit > 0)"
# The trained checkpoint that ships with the package: what every command uses when no
# --checkpoint is given (see imx500_picosam.resolve, and docs/results.md for how it was made).
DEFAULT_CHECKPOINT = Path(__file__).resolve().parent / "checkpoints" / "picosam3_minisam.weights.h5"


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

    @property
    def sidecar_path(self) -> Path:
        return sidecar_path_for(self.weights_path)

    def describe(self) -> str:
        return f"{self.weights_path.name} ({self.architecture}, {self.provenance.kind})"


def sidecar_path_for(weights_path: Path) -> Path:
    name = weights_path.name
    stem = name[: -len(WEIGHTS_SUFFIX)] if name.endswith(WEIGHTS_SUFFIX) else weights_path.stem
    return weights_path.with_name(stem + ".json")


def save_checkpoint(model, weights_path: Path, provenance: Provenance) -> Checkpoint:
    """Save ``model``'s weights and sidecar atomically; returns the loaded description."""
    from .model import count_parameters, has_input_normalisation

    weights_path = Path(weights_path)
    if not weights_path.name.endswith(WEIGHTS_SUFFIX):
        raise PicosamError(f"{weights_path}: checkpoint weights must be named *{WEIGHTS_SUFFIX}")
    if provenance.kind not in PROVENANCE_KINDS:
        raise PicosamError(f"provenance '{provenance.kind}' is not one of {PROVENANCE_KINDS}")
    with atomic_path(weights_path, suffix=WEIGHTS_SUFFIX) as tmp:
        model.save_weights(str(tmp))
        digest = sha256_of(tmp)
        checkpoint = Checkpoint(
            weights_path=weights_path,
            architecture=model.name,
            provenance=provenance,
            weights_sha256=digest,
            parameters=count_parameters(model),
            input_normalisation=has_input_normalisation(model),
        )
        write_json(checkpoint.sidecar_path, _sidecar(checkpoint))
    return checkpoint


def _sidecar(checkpoint: Checkpoint) -> Dict[str, Any]:
    return {
        "format": SIDECAR_FORMAT,
        "architecture": checkpoint.architecture,
        "input": {"shape": [96, 96, 3], "contract": INPUT_CONTRACT},
        "output": {"shape": [96, 96, 1], "contract": OUTPUT_CONTRACT},
        "parameters": checkpoint.parameters,
        "input_normalisation": checkpoint.input_normalisation,
        "weights_file": checkpoint.weights_path.name,
        "weights_sha256": checkpoint.weights_sha256,
        "provenance": asdict(checkpoint.provenance),
    }


def read_checkpoint(path: Path) -> Checkpoint:
    """Read and verify a checkpoint given by its weights file or its sidecar."""
    path = Path(path)
    weights_path = path.with_name(path.stem + WEIGHTS_SUFFIX) if path.suffix == ".json" else path
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
    if provenance.get("kind") not in PROVENANCE_KINDS:
        raise PicosamError(f"{sidecar}: provenance kind must be one of {PROVENANCE_KINDS}")
    digest = sha256_of(weights_path)
    if digest != meta.get("weights_sha256"):
        raise PicosamError(f"{weights_path}: sha256 {digest[:12]}… does not match its sidecar")
    return Checkpoint(
        weights_path=weights_path,
        architecture=str(meta.get("architecture")),
        provenance=Provenance(kind=provenance["kind"], details=provenance.get("details", {})),
        weights_sha256=digest,
        parameters=int(meta.get("parameters", 0)),
        input_normalisation=bool(meta.get("input_normalisation", False)),
    )


def load_model(checkpoint: Checkpoint):
    """Build the checkpoint's architecture and load its weights."""
    from .model import ARCHITECTURES, build_model

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

    from .model import build_model

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
