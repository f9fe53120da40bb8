"""The ``rpk`` command group: inspect IMX500 network packages and set their intrinsics."""

from __future__ import annotations

import json
import math
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import click

from .errors import RpkError
from .rpk import TASKS, build_intrinsics, load_intrinsics_json, read_rpk, summarize, write_with_intrinsics

DEFAULT_OUTPUT_SUFFIX = ".intrinsics.rpk"


class AliasOption(click.Option):
    """An option with old spellings (``old=("--arch",)``): still accepted, not shown in --help.
    (Here, at the bottom, so the RPK tools and ``picosam`` share it.)"""

    def __init__(self, param_decls, old=(), **kwargs):
        super().__init__(tuple(param_decls) + tuple(old), **kwargs)
        self._old = set(old)

    def get_help_record(self, ctx):
        every = self.opts
        self.opts = [name for name in every if name not in self._old]
        try:
            return super().get_help_record(ctx)
        finally:
            self.opts = every


@contextmanager
def _user_errors() -> Iterator[None]:
    """Show an RpkError as click's one-line error with exit code 1, never a traceback."""
    try:
        yield
    except RpkError as err:
        raise click.ClickException(str(err)) from err


@click.group(name="rpk")
def rpk_group() -> None:
    """Inspect IMX500 network packages (.rpk) and set their network_intrinsics."""


@rpk_group.command("inspect")
@click.argument("file", type=click.Path(path_type=Path))
@click.option("--json", "as_json", is_flag=True, help="Print the summary as JSON.")
def inspect_command(file: Path, as_json: bool) -> None:
    """Show FILE's firmware blocks, network_info, intrinsics and tensor facts."""
    with _user_errors():
        summary = summarize(read_rpk(file))
    click.echo(json.dumps(json_safe(summary), indent=2, allow_nan=False) if as_json else format_summary(summary))


def json_safe(value: object) -> object:
    """``value`` with every NaN or infinity (which JSON cannot hold, though Python's json
    module reads and writes them) replaced by its name as a string."""
    if isinstance(value, float) and not math.isfinite(value):
        return repr(value)
    if isinstance(value, dict):
        return {key: json_safe(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [json_safe(item) for item in value]
    return value


@rpk_group.command("set-intrinsics")
@click.argument("file", type=click.Path(path_type=Path))
@click.option("--intrinsics", "json_file", cls=AliasOption, old=("--json",), type=click.Path(path_type=Path),
              help="Intrinsics JSON file to embed.")
@click.option("--task", type=click.Choice(TASKS), help="Network task.")
@click.option("--inference-rate", type=click.FloatRange(min=0), help="Inferences per second.")
@click.option("--input-aspect-ratio", metavar="W:H", help="Aspect ratio of the input, e.g. 1:1.")
@click.option("--out", type=click.Path(path_type=Path),
              help=f"Output package [default: <stem>{DEFAULT_OUTPUT_SUFFIX} next to FILE].")
def set_intrinsics_command(
    file: Path,
    json_file: Path | None,
    task: str | None,
    inference_rate: float | None,
    input_aspect_ratio: str | None,
    out: Path | None,
) -> None:
    """Write a copy of FILE whose network_intrinsics is replaced; FILE itself is never changed.

    Give either --intrinsics F, or --task and --inference-rate (and optionally
    --input-aspect-ratio).
    """
    field_options = {"--task": task, "--inference-rate": inference_rate, "--input-aspect-ratio": input_aspect_ratio}
    given_fields = [name for name, value in field_options.items() if value is not None]
    if json_file is not None and given_fields:
        raise click.UsageError(f"give either --intrinsics or {', '.join(given_fields)}, not both")
    if json_file is None and (task is None or inference_rate is None):
        raise click.UsageError("give --intrinsics F, or both --task and --inference-rate")
    out = out or file.with_name(file.stem + DEFAULT_OUTPUT_SUFFIX)
    with _user_errors():
        if json_file is not None:
            intrinsics = load_intrinsics_json(json_file)
        else:
            intrinsics = build_intrinsics(
                task=task,
                inference_rate=_whole_as_int(inference_rate),
                input_aspect_ratio=_parse_aspect_ratio(input_aspect_ratio),
            )
        write_with_intrinsics(file, out, intrinsics)
    click.echo(f"wrote {out} with network_intrinsics {json.dumps(intrinsics)}")


def _whole_as_int(value: float) -> int | float:
    """19.0 becomes 19, matching how the vendor packages store whole rates."""
    return int(value) if value.is_integer() else value


def _parse_aspect_ratio(text: str | None) -> dict | None:
    if text is None:
        return None
    width, separator, height = text.partition(":")
    if not (separator and width.isdigit() and height.isdigit()):
        raise RpkError(f"--input-aspect-ratio {text!r}: expected W:H with whole numbers, e.g. 4:3")
    return {"width": int(width), "height": int(height)}


def format_summary(summary: dict) -> str:
    """The human-readable form of :func:`firmware_packaging.rpk.summarize`'s result."""
    sections = [
        _format_overview(summary),
        _format_blocks(summary["blocks"]),
        _format_network_info(summary["network_info"]),
        _format_intrinsics(summary["intrinsics"]),
        _format_tensors(summary["input_tensor"], summary["output_tensors"]),
        "\n".join(["verified:", *(f"  {item}" for item in summary["verified"]),
                   "not verified:", *(f"  {item}" for item in summary["not_verified"])]),
    ]
    return "\n\n".join(sections)


def _format_overview(summary: dict) -> str:
    cpio = summary["cpio"]
    members = ", ".join(f"{e['name']} ({e['size']} bytes)" for e in cpio["entries"])
    return (
        f"file: {summary['file']} ({summary['size']} bytes)\n"
        f"CPIO archive: offset {cpio['offset']}, {cpio['size']} bytes: {members}"
    )


def _format_blocks(blocks: list[dict]) -> str:
    lines = [f"firmware blocks: {len(blocks)}", f"  {'#':>2}  {'offset':>10}  {'payload':>10}  {'framed':>10}  flags"]
    lines += [
        f"  {b['index']:>2}  {b['offset']:>10}  {b['payload_size']:>10}  {b['framed_size']:>10}  {b['flags']}"
        for b in blocks
    ]
    return "\n".join(lines)


def _format_network_info(network_info: dict[str, str]) -> str:
    return "\n".join(["network_info:", *(f"  {key}: {value}" for key, value in network_info.items())])


def _format_intrinsics(intrinsics: dict | None) -> str:
    return f"network_intrinsics: {json.dumps(json_safe(intrinsics), allow_nan=False) if intrinsics is not None else 'none'}"


def _format_tensors(input_tensor: dict, output_tensors: dict) -> str:
    lines = ["input tensor:", *(f"  {key}: {_or_unknown(value)}" for key, value in input_tensor.items())]
    lines.append(f"output tensors: {_or_unknown(output_tensors['count'])}")
    lines += [
        f"  {t['index']}: dim_size {_or_unknown(t['dim_size'])}, "
        f"{_or_unknown(t['bytes_per_element'])} bytes per element, padding {_or_unknown(t['padding'])}"
        for t in output_tensors["tensors"]
    ]
    return "\n".join(lines)


def _or_unknown(value: object) -> str:
    return "unknown" if value is None else str(value)
