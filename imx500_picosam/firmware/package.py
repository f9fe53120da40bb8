"""Stage: ``packerOut.zip`` -> ``network.rpk`` with Sony's ``imx500-package``, plus intrinsics.

``imx500-package`` ships only in Raspberry Pi OS (apt package ``imx500-tools``). Where it
is present we run it, then embed ``network_intrinsics`` (task, inference rate, input
aspect ratio) into the RPK's CPIO archive in pure Python and re-validate the result.
Where it is absent (an x86 build machine, CI) packaging is skipped with one line that says
how to finish on a Pi; the build is still a success up to ``packerOut.zip``.
"""

from __future__ import annotations

import shutil
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Dict, Optional

from ..errors import PicosamError

PACKAGER = "imx500-package"
RPK_NAME = "network.rpk"


@dataclass(frozen=True)
class PackagingResult:
    status: str  # "packaged" or "skipped"
    message: str
    rpk: Optional[Path] = None
    intrinsics: Optional[Dict[str, Any]] = None


# The ROI rules (imx500_picosam.geometry.ROI_RULES, spelled out here: this module runs on the Pi
# from the flash bundle, which carries no geometry). How the rule travels in an RPK: picamera2
# keeps a ROI's aspect ratio only when network_intrinsics carries input_aspect_ratio, so a
# ``square`` model gets 1:1 and a ``warp`` model none (the sensor stretches the box's ROI as it is).
SQUARE_INTRINSICS = {"width": 1, "height": 1}
ROI_RULES = ("square", "warp")  # == geometry.ROI_RULES (tests/test_roi_rule.py checks)


def _check_rule(rule, what: str) -> str:
    if rule not in ROI_RULES:
        raise PicosamError(f"{what} {str(rule)[:20]!r} is not one of {', '.join(ROI_RULES)}")
    return rule


def segmentation_intrinsics(inference_rate: float, roi_rule: str) -> Dict[str, Any]:
    """What picamera2 needs to know about a PicoSAM network trained with ``roi_rule``."""
    from firmware_packaging.rpk import build_intrinsics

    _check_rule(roi_rule, "ROI rule")
    aspect = dict(SQUARE_INTRINSICS) if roi_rule == "square" else None
    return build_intrinsics(task="segmentation", inference_rate=inference_rate, input_aspect_ratio=aspect)


def roi_rule_of_intrinsics(intrinsics: Optional[Dict[str, Any]]) -> str:
    """The ROI rule a PicoSAM RPK's ``network_intrinsics`` stands for: ``square`` with an
    input_aspect_ratio of 1:1, ``warp`` without one."""
    aspect = (intrinsics or {}).get("input_aspect_ratio")
    if aspect is None:
        return "warp"
    if isinstance(aspect, dict) and aspect.get("width") == aspect.get("height"):
        return "square"
    raise PicosamError(f"network_intrinsics input_aspect_ratio {aspect}: a PicoSAM network is 1:1 (square) or has none (warp)")


def roi_rule_of_report(report_path: Path) -> Optional[str]:
    """The ROI rule a build report records (``model.roi_rule``); None without a report. A report
    from before rules existed built a ``square`` model."""
    import json

    report_path = Path(report_path)
    if not report_path.is_file():
        return None
    try:
        report = json.loads(report_path.read_text())
    except (OSError, ValueError) as err:
        raise PicosamError(f"{report_path}: not a readable build report ({err.__class__.__name__})") from None
    rule = (report.get("model") or {}).get("roi_rule", "square") if isinstance(report, dict) else None
    return _check_rule(rule, f"{report_path}: model.roi_rule")


def finish_on_pi_hint(packer_out: Path) -> str:
    return (
        f"{PACKAGER} is not on this machine (it ships only in Raspberry Pi OS): {packer_out} is ready; "
        f"on a Raspberry Pi with this project, run `make package PACKER_OUT=path/to/{packer_out.name}` "
        f"(after `sudo apt install imx500-tools`; the build_report.json beside it, or ROI_RULE=warp|square, "
        f"says the model's ROI rule) to get network.rpk"
    )


def check_packer_out(packer_out: Path) -> Path:
    """``packer_out`` if it is a packerOut.zip (a zip holding the converter's dnnParams.xml);
    otherwise a one-line error saying what it is instead."""
    from firmware_packaging.files import describe_file, file_kind

    if file_kind(packer_out) != "packerOut":
        raise PicosamError(f"{packer_out}: is {describe_file(packer_out)}, not a packerOut.zip "
                           "(the converter's output, e.g. build/packerOut.zip from `picosam build`)")
    return packer_out


def package_rpk(packer_out: Path, output_dir: Path, inference_rate: float, roi_rule: Optional[str]) -> PackagingResult:
    """Package ``packer_out`` into ``output_dir/network.rpk`` with the intrinsics of a model
    trained with ``roi_rule``, atomically. ``roi_rule`` None (no build report says it) is
    refused where the packager runs: the RPK would otherwise carry the wrong intrinsics."""
    from firmware_packaging.rpk import read_rpk, write_with_intrinsics

    packer_out, output_dir = Path(packer_out), Path(output_dir)
    if not packer_out.is_file():
        raise PicosamError(f"{packer_out}: packerOut.zip not found")
    check_packer_out(packer_out)
    executable = shutil.which(PACKAGER)
    if executable is None:
        return PackagingResult(status="skipped", message=finish_on_pi_hint(packer_out))
    if roi_rule is None:
        raise PicosamError(f"{output_dir / 'build_report.json'} not found: say which ROI rule {packer_out} was built for "
                           "with --roi-rule warp|square (its build report records it)")
    intrinsics = segmentation_intrinsics(inference_rate, roi_rule)
    output_dir.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix=".package.", dir=output_dir) as work:
        completed = subprocess.run(
            [executable, "-i", str(packer_out), "-o", work],
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        log_path = output_dir / f"{PACKAGER}.log"
        log_path.write_text(completed.stdout)
        if completed.returncode != 0:
            last = [line for line in completed.stdout.splitlines() if line.strip()]
            raise PicosamError(
                f"{PACKAGER} failed on {packer_out} (exit {completed.returncode}): "
                f"{last[-1].strip() if last else 'no output'} (log: {log_path})"
            )
        produced = sorted(Path(work).rglob("*.rpk"))
        if not produced:
            raise PicosamError(f"{PACKAGER} produced no .rpk from {packer_out} (log: {log_path})")
        read_rpk(produced[0])  # fail early, with the packager's file named, if it is malformed
        final = output_dir / RPK_NAME
        write_with_intrinsics(produced[0], final, intrinsics)
    return PackagingResult(status="packaged", message=f"wrote {final}", rpk=final, intrinsics=intrinsics)
