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


def segmentation_intrinsics(inference_rate: float) -> Dict[str, Any]:
    """What picamera2 needs to know about a PicoSAM network (square 96x96 input)."""
    from firmware_packaging.rpk import build_intrinsics

    return build_intrinsics(task="segmentation", inference_rate=inference_rate, input_aspect_ratio={"width": 1, "height": 1})


def finish_on_pi_hint(packer_out: Path) -> str:
    return (
        f"{PACKAGER} is not on this machine (it ships only in Raspberry Pi OS): {packer_out} is ready; "
        f"on a Raspberry Pi with this project, run `make package PACKER_OUT=path/to/{packer_out.name}` "
        f"(after `sudo apt install imx500-tools`) to get network.rpk"
    )


def check_packer_out(packer_out: Path) -> Path:
    """``packer_out`` if it is a packerOut.zip (a zip holding the converter's dnnParams.xml);
    otherwise a one-line error saying what it is instead."""
    from firmware_packaging.files import describe_file, file_kind

    if file_kind(packer_out) != "packerOut":
        raise PicosamError(f"{packer_out}: is {describe_file(packer_out)}, not a packerOut.zip "
                           "(the converter's output, e.g. build/packerOut.zip from `picosam build`)")
    return packer_out


def package_rpk(packer_out: Path, output_dir: Path, inference_rate: float) -> PackagingResult:
    """Package ``packer_out`` into ``output_dir/network.rpk`` with intrinsics, atomically."""
    from firmware_packaging.rpk import read_rpk, write_with_intrinsics

    packer_out, output_dir = Path(packer_out), Path(output_dir)
    if not packer_out.is_file():
        raise PicosamError(f"{packer_out}: packerOut.zip not found")
    check_packer_out(packer_out)
    executable = shutil.which(PACKAGER)
    if executable is None:
        return PackagingResult(status="skipped", message=finish_on_pi_hint(packer_out))
    intrinsics = segmentation_intrinsics(inference_rate)
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
