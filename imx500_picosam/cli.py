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


UNTRAINED_WARNING = "!!! UNTRAINED MODEL: a seeded initialisation, its masks are meaningless (--checkpoint to use yours)"


@main.command()
@click.option("--rpk", "rpk_path", type=click.Path(path_type=Path), default=None,
              help="A PicoSAM network.rpk: run it on the Raspberry Pi AI Camera (picamera2, Raspberry Pi OS).")
@click.option("--emulate", is_flag=True, help="Emulate the camera on this computer's CPU instead.")
@click.option("--source", default=None, metavar="IMAGE|VIDEO|0",
              help="With --emulate: an image file, a video file, or a webcam index such as 0.")
@click.option("--checkpoint", type=click.Path(path_type=Path), default=None,
              help="With --emulate: the checkpoint to quantize and run (default: the shipped trained one; "
                   "without it a seeded, untrained initialisation).")
@click.option("--engine", type=click.Choice(["tflite", "keras"]), default="tflite", show_default=True,
              help="With --emulate: MCT's INT8 TFLite export (fast) or MCT's quantized Keras model (the reference).")
@click.option("--box", "boxes", multiple=True, metavar="x,y,w,h",
              help="Prompt box in main-stream pixels; repeat it to segment several objects in turn "
                   "(default: the whole frame).")
@click.option("--follow", is_flag=True, help="Re-centre each prompt on its previous mask's bounding box (tracking).")
@click.option("--headless", is_flag=True, help="No window: write a mask PNG and a JSON line per frame to --out.")
@click.option("--frames", type=click.IntRange(min=1), default=None,
              help="Stop after N frames (headless default: a video to its end, one frame per prompt for an image).")
@click.option("--out", "out_dir", type=click.Path(path_type=Path), default=None,
              help="With --headless: folder for frames.jsonl, masks/ and run.json.")
def demo(rpk_path: Optional[Path], emulate: bool, source: Optional[str], checkpoint: Optional[Path], engine: str,
         boxes: tuple, follow: bool, headless: bool, frames: Optional[int], out_dir: Optional[Path]) -> None:
    """Segment what the camera sees: drag a box to prompt, r resets, q quits (or --headless)."""
    _quiet_tensorflow()
    from .geometry import parse_box

    if (rpk_path is None) == (not emulate):
        raise PicosamError("choose one: --rpk network.rpk (the camera) or --emulate --source IMAGE|VIDEO|0")
    if emulate and source is None:
        raise PicosamError("--emulate needs --source IMAGE|VIDEO|0 (an image, a video file or a webcam index)")
    if rpk_path is not None and (source is not None or checkpoint is not None):
        raise PicosamError("--source and --checkpoint go with --emulate; on the camera the network is the one in the RPK")
    if headless and out_dir is None:
        raise PicosamError("--headless needs --out DIR for the masks and JSON lines")
    if not headless and out_dir is not None:
        raise PicosamError("--out goes with --headless (the window writes nothing)")
    prompt_boxes = [parse_box(text) for text in boxes]

    from .runtime.demo import require_window, run_headless, run_interactive

    if not headless:
        require_window()  # before minutes of loading, not after
    warning = None
    if emulate:
        backend, run_info, warning = _emulator_backend(source, checkpoint, engine, loop=not headless)
    else:
        from .runtime.imx500 import IMX500Backend

        backend = IMX500Backend(rpk_path)
        run_info = {"backend": "imx500", "rpk": str(rpk_path), "settle_frames": backend.settle_frames}
    from .runtime.session import Session

    with Session(backend, boxes=prompt_boxes, follow=follow) as session:
        if headless:
            run_headless(session, out_dir, frames, {**run_info, "follow": follow}, echo=click.echo)
        else:
            run_interactive(session, warning=warning, frames=frames)
    if warning:
        click.echo(warning, err=True)


def _emulator_backend(source: str, checkpoint: Optional[Path], engine: str, loop: bool):
    from .checkpoint import resolve_checkpoint
    from .runtime.emulator import EmulatorBackend, cache_dir, load_engine, open_source

    frames = open_source(source, loop=loop)
    ckpt = resolve_checkpoint(checkpoint, cache_dir() / "checkpoint" / "picosam3-init.weights.h5")
    untrained = ckpt.provenance.kind == "initialised"
    if untrained:
        click.echo(UNTRAINED_WARNING, err=True)
    backend = EmulatorBackend(frames, load_engine(ckpt, engine, log=lambda line: click.echo(line, err=True)))
    run_info = {"backend": "emulator", "source": source, "engine": engine, "checkpoint": str(ckpt.weights_path),
                "checkpoint_sha256": ckpt.weights_sha256, "provenance": ckpt.provenance.kind, "untrained": untrained}
    return backend, run_info, UNTRAINED_WARNING if untrained else None


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


def _register_rpk_tools() -> None:
    from firmware_packaging.cli import rpk_group

    main.add_command(rpk_group)


_register_rpk_tools()
