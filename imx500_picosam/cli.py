"""The ``picosam`` command line.

TensorFlow is imported inside the commands that need it, so ``picosam rpk ...`` and
``picosam package`` start instantly and work on a Raspberry Pi without TensorFlow.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Optional

import click

from .errors import PicosamError


class _Group(click.Group):
    """Turns every :class:`PicosamError` into ``error: <one line>`` and exit code 1."""

    def invoke(self, ctx):
        try:
            return super().invoke(ctx)
        except PicosamError as err:
            raise click.ClickException(str(err)) from None


def _quiet_tensorflow() -> None:
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")


@click.group(cls=_Group)
@click.version_option(package_name="imx500-picosam")
def main() -> None:
    """PicoSAM3 for the Raspberry Pi AI Camera (Sony IMX500): build, inspect, run."""


@main.command()
@click.option("--checkpoint", type=click.Path(path_type=Path), default=None,
              help="Checkpoint: *.weights.h5 with its .json sidecar, or the authors' PyTorch *.pt (imported first). "
                   "Default: a seeded, untrained initialisation.")
@click.option("--out", "output_dir", type=click.Path(path_type=Path), default=Path("build"), show_default=True)
@click.option("--gptq", is_flag=True, help="Use MCT's gradient-based PTQ (GPTQ) instead of plain PTQ.")
@click.option("--gptq-epochs", type=click.IntRange(min=1), default=5, show_default=True)
@click.option("--inference-rate", type=float, default=30.0, show_default=True,
              help="Frames per second written into the RPK's network_intrinsics.")
@click.option("--tpc-version", default=None, help="edge-mdt-tpc version (default: the one matching the converter).")
def build(checkpoint: Optional[Path], output_dir: Path, gptq: bool, gptq_epochs: int, inference_rate: float, tpc_version: Optional[str]) -> None:
    """Quantize, convert and (on a Pi) package the firmware: what `make rpk` runs."""
    _quiet_tensorflow()
    from .build import BuildOptions, build_firmware, summary_lines

    outcome = build_firmware(
        BuildOptions(checkpoint=checkpoint, output_dir=output_dir, gptq=gptq, gptq_epochs=gptq_epochs,
                     inference_rate=inference_rate, tpc_version=tpc_version)
    )
    for line in summary_lines(outcome.report):
        click.echo(line, err=line.startswith("!!!"))
    click.echo(f"report       {outcome.report_path}")


@main.command("init-checkpoint")
@click.option("--out", "weights_path", type=click.Path(path_type=Path), required=True,
              help="Where to write NAME.weights.h5 (and NAME.json beside it).")
@click.option("--architecture", type=click.Choice(["picosam3", "picosam2"]), default="picosam3", show_default=True)
@click.option("--seed", type=int, default=0, show_default=True)
def init_checkpoint(weights_path: Path, architecture: str, seed: int) -> None:
    """Write a seeded, untrained checkpoint (provenance: initialised)."""
    _quiet_tensorflow()
    from .checkpoint import initialise_checkpoint

    ckpt = initialise_checkpoint(weights_path, architecture=architecture, seed=seed)
    click.echo(f"wrote {ckpt.weights_path} and {ckpt.sidecar_path} ({ckpt.parameters:,} parameters, untrained)")


@main.command("import-weights")
@click.argument("pt_file", type=click.Path(path_type=Path))
@click.option("--arch", type=click.Choice(["auto", "picosam3", "picosam2"]), default="auto", show_default=True)
@click.option("--out", "output_dir", type=click.Path(path_type=Path), required=True,
              help="Folder for NAME.weights.h5 and its NAME.json sidecar.")
def import_weights(pt_file: Path, arch: str, output_dir: Path) -> None:
    """Import the authors' PyTorch checkpoint (PicoSAM3 or PicoSAM2) as a Keras checkpoint."""
    _quiet_tensorflow()
    from .import_weights import import_checkpoint

    ckpt = import_checkpoint(pt_file, output_dir, arch=arch)
    click.echo(f"wrote {ckpt.weights_path} and {ckpt.sidecar_path} ({ckpt.architecture}, {ckpt.parameters:,} parameters)")
    note = ckpt.provenance.details.get("name_mismatch_note")
    if note:
        click.echo(f"note: {note}")


@main.command()
@click.option("--checkpoint", type=click.Path(path_type=Path), required=True)
@click.option("--image", "image_path", type=click.Path(path_type=Path), required=True)
@click.option("--box", required=True, help="Prompt box in image pixels, COCO x,y,w,h.")
@click.option("--quantized", is_flag=True, help="Run the MCT-quantized model (as `make rpk` quantizes it).")
@click.option("--out", "mask_path", type=click.Path(path_type=Path), required=True, help="Mask PNG at the image's size.")
@click.option("--logits", "logits_path", type=click.Path(path_type=Path), default=None,
              help="Also save the raw 96x96 logits of the ROI crop (.npy).")
def segment(checkpoint: Path, image_path: Path, box: str, quantized: bool, mask_path: Path, logits_path: Optional[Path]) -> None:
    """Segment the object in BOX of a still image."""
    _quiet_tensorflow()
    import numpy as np
    from PIL import Image

    from .atomic import atomic_path
    from .calibration import load_image_rgb
    from .geometry import parse_box
    from .predictor import Predictor

    box_xywh = parse_box(box)
    image = load_image_rgb(image_path)
    predictor = Predictor.from_checkpoint(checkpoint, quantized=quantized)
    try:
        result = predictor.segment(image, box_xywh)
    except PicosamError as err:
        raise PicosamError(f"{image_path}: {err}") from None
    with atomic_path(mask_path, suffix=".png") as tmp:
        Image.fromarray(result.mask.astype(np.uint8) * 255).save(tmp, format="PNG")
    if logits_path is not None:
        with atomic_path(logits_path, suffix=".npy") as tmp:
            np.save(tmp, result.logits)
    roi = result.roi
    click.echo(
        f"{mask_path}: {int(result.mask.sum())} of {result.mask.size} pixels in the mask; "
        f"ROI x={roi.x0} y={roi.y0} w={roi.width} h={roi.height}"
    )


@main.command()
@click.option("--packer-out", type=click.Path(path_type=Path), default=Path("build/packerOut.zip"), show_default=True)
@click.option("--out", "output_dir", type=click.Path(path_type=Path), default=Path("build"), show_default=True)
@click.option("--inference-rate", type=float, default=30.0, show_default=True)
def package(packer_out: Path, output_dir: Path, inference_rate: float) -> None:
    """Package packerOut.zip into network.rpk with imx500-package (Raspberry Pi OS)."""
    from .package import package_rpk

    result = package_rpk(packer_out, output_dir, inference_rate)
    click.echo(result.message)
    if result.intrinsics is not None:
        click.echo("network_intrinsics " + json.dumps(result.intrinsics))


@main.command()
@click.option("--host", "destination", required=True, metavar="USER@PI", help="SSH destination of the Raspberry Pi.")
@click.option("--port", type=click.IntRange(1, 65535), default=22, show_default=True, help="SSH port.")
@click.option("--identity", type=click.Path(path_type=Path), default=None,
              help="SSH private key [default: ssh's own choice: agent, ~/.ssh/id_*].")
@click.option("--known-hosts", type=click.Path(path_type=Path), default=None,
              help="known_hosts file holding the Pi's host key [default: ~/.ssh/known_hosts]. Checking is always on.")
@click.option("--remote-dir", default="~/picosam", show_default=True,
              help="Folder on the Pi for current.rpk, firmware/ and logs/.")
@click.option("--build", "build_dir", type=click.Path(path_type=Path), default=Path("build"), show_default=True,
              help="Build folder: its packerOut.zip (else network.rpk) is flashed and its build_report.json updated.")
@click.option("--firmware", type=click.Path(path_type=Path), default=None,
              help="Flash this packerOut.zip or .rpk instead of the build folder's.")
@click.option("--inference-rate", type=float, default=30.0, show_default=True,
              help="Frames per second written into network_intrinsics when packaging on the Pi.")
@click.option("--frames", type=click.IntRange(min=1), default=30, show_default=True,
              help="Frames the on-device smoke test captures; half must carry the expected output tensor.")
@click.option("--retries", type=click.IntRange(min=1), default=3, show_default=True, help="Transfer attempts.")
@click.option("--connect-timeout", type=click.IntRange(min=1), default=10, show_default=True, help="Seconds.")
@click.option("--remote-python", default="python3", show_default=True,
              help="Python on the Pi that can import picamera2 (e.g. a venv made with --system-site-packages).")
def flash(destination: str, port: int, identity: Optional[Path], known_hosts: Optional[Path], remote_dir: str,
          build_dir: Path, firmware: Optional[Path], inference_rate: float, frames: int, retries: int,
          connect_timeout: int, remote_python: str) -> None:
    """Deploy a build to a Raspberry Pi AI Camera over SSH: package there, smoke-test, switch current.rpk."""
    from . import flash as flashing

    plan = flashing.plan_flash(
        destination, port=port, identity=identity, known_hosts=known_hosts, remote_dir=remote_dir,
        build_dir=build_dir, firmware=firmware, remote_python=remote_python, inference_rate=inference_rate,
        frames=frames, retries=retries, connect_timeout=connect_timeout,
    )
    outcome = flashing.flash(plan, echo=lambda line: click.echo(line, err=True))
    for line in flashing.summary_lines(outcome):
        click.echo(line)


def _register_rpk_tools() -> None:
    from firmware_packaging.cli import rpk_group

    main.add_command(rpk_group)


_register_rpk_tools()
