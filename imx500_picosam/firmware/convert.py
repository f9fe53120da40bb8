"""Stage: MCT-exported Keras model -> ``packerOut.zip`` with Sony's ``imxconv-tf``.

The converter is run as a subprocess (it is a Java + Python toolchain) with its full log
kept beside the outputs. Its memory report and ``dnnParams.xml`` are parsed into plain
data, and the three ways a conversion goes wrong for users — no Java 17, an op the
sensor cannot run, a network that does not fit in the 8 MB — each end in one line.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
import time
import xml.etree.ElementTree as ET
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Dict, List, Optional, Tuple

from ..atomic import atomic_directory, atomic_path
from ..errors import PicosamError
from ..extras import install_hint
from ..toolchain import installed_version

CONVERTER = "imxconv-tf"
REQUIRED_JAVA_MAJOR = 17
MIB = 1024 * 1024


@dataclass(frozen=True)
class TensorInfo:
    name: str
    shape: List[int]  # in ordinal order (height, width, channels)
    bits: int
    scale: float
    signed: bool


@dataclass(frozen=True)
class MemoryReport:
    memory_usage_bytes: int
    total_on_chip_bytes: int
    runtime_bytes: int
    model_bytes: int
    fit_in_chip: bool
    utilization: str

    @property
    def memory_usage_mb(self) -> float:
        """Megabytes as the converter prints them (MiB)."""
        return self.memory_usage_bytes / MIB

    @property
    def total_on_chip_mb(self) -> float:
        return self.total_on_chip_bytes / MIB


@dataclass(frozen=True)
class ConversionResult:
    output_dir: Path
    packer_out: Path
    log_path: Path
    converter_version: str
    memory: MemoryReport
    inputs: List[TensorInfo] = field(default_factory=list)
    outputs: List[TensorInfo] = field(default_factory=list)
    seconds: float = 0.0


def java_major_version(java: Optional[str] = None) -> Optional[int]:
    """Major version of ``java`` on PATH, or None when there is none."""
    java = java or shutil.which("java")
    if java is None:
        return None
    try:
        completed = subprocess.run([java, "-version"], capture_output=True, text=True, timeout=60)
    except (OSError, subprocess.TimeoutExpired):
        return None
    match = re.search(r'version "(\d+)(?:\.(\d+))?', completed.stderr + completed.stdout)
    if not match:
        return None
    major = int(match.group(1))
    return int(match.group(2)) if major == 1 and match.group(2) else major  # "1.8" style


def require_java() -> int:
    major = java_major_version()
    if major is None:
        raise PicosamError(
            f"{CONVERTER} needs Java {REQUIRED_JAVA_MAJOR}, and no 'java' was found on PATH "
            "(Debian/Raspberry Pi OS: sudo apt install openjdk-17-jre-headless)"
        )
    if major < REQUIRED_JAVA_MAJOR:
        raise PicosamError(
            f"{CONVERTER} needs Java {REQUIRED_JAVA_MAJOR}, but 'java' on PATH is Java {major} "
            "(install openjdk-17-jre-headless and put it first on PATH)"
        )
    return major


def find_converter() -> Optional[str]:
    """imxconv-tf from this Python's environment first (a venv need not be activated)."""
    beside_python = Path(sys.executable).parent / CONVERTER
    return str(beside_python) if beside_python.is_file() else shutil.which(CONVERTER)


def parse_size(text: str) -> int:
    """Converter sizes like '3843296B', '3.67MB', '31.00KB' -> bytes."""
    match = re.fullmatch(r"\s*([\d.]+)\s*([KMG]?)B\s*", str(text))
    if not match:
        raise ValueError(f"unrecognised size '{text}'")
    scale = {"": 1, "K": 1024, "M": MIB, "G": 1024 * MIB}[match.group(2)]
    return int(round(float(match.group(1)) * scale))


def parse_memory_report(path: Path) -> MemoryReport:
    try:
        report = json.loads(Path(path).read_text())["Memory Report"]
        return MemoryReport(
            memory_usage_bytes=parse_size(report["Memory Usage"]),
            total_on_chip_bytes=parse_size(report["Total Memory Available On Chip"]),
            runtime_bytes=parse_size(report["Runtime Memory Physical Size"]),
            model_bytes=parse_size(report["Model Memory Physical Size"]),
            fit_in_chip=bool(report["Fit In Chip"]),
            utilization=str(report.get("Memory Utilization", "")),
        )
    except (OSError, KeyError, TypeError, ValueError) as err:
        raise PicosamError(f"{path}: unreadable converter memory report ({err})") from None


def _tensor(element: ET.Element) -> TensorInfo:
    dims = sorted(element.iter("dimension"), key=lambda d: int(d.get("ordinal", 0)))
    return TensorInfo(
        name=element.get("name", ""),
        shape=[int(d.get("size", 0)) for d in dims],
        bits=int(element.get("bitsPerElement", 0)),
        scale=float(element.get("scale", 0.0)),
        signed=element.get("format") == "signed",
    )


def parse_dnn_params(path: Path) -> Dict[str, List[TensorInfo]]:
    try:
        root = ET.parse(path).getroot()
    except (OSError, ET.ParseError) as err:
        raise PicosamError(f"{path}: unreadable dnnParams.xml ({err})") from None
    return {
        "inputs": [_tensor(t) for t in root.iter("inputTensor")],
        "outputs": [_tensor(t) for t in root.iter("outputTensor")],
    }


def _failure_line(log: str) -> str:
    usop = [line for line in log.splitlines() if "[USOP]" in line]
    if usop:
        return "unsupported ops: " + usop[0].split("[USOP]", 1)[1].split(" [/")[0].strip()
    errors = [line for line in log.splitlines() if " ERROR " in line or "ERROR :" in line]
    if errors:
        return errors[-1].split("ERROR", 1)[1].lstrip(" :").split(" [/")[0].strip()
    tail = [line for line in log.splitlines() if line.strip()]
    return tail[-1].strip() if tail else "no output"


def _run_streaming(command: List[str], on_line: Optional[Callable[[str], None]]) -> Tuple[int, str]:
    """Run ``command``, handing each line it prints to ``on_line`` as it comes; (exit code, output)."""
    if on_line is None:
        completed = subprocess.run(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        return completed.returncode, completed.stdout
    lines = []
    with subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, bufsize=1) as process:
        for line in process.stdout:
            lines.append(line)
            if line.strip():
                on_line(line.rstrip())
    return process.returncode, "".join(lines)


def convert(keras_model: Path, output_dir: Path, on_line: Optional[Callable[[str], None]] = None) -> ConversionResult:
    """Run imxconv-tf on ``keras_model``; outputs land in ``output_dir`` only on success.
    ``on_line`` is handed the converter's own output line by line while it runs."""
    keras_model, output_dir = Path(keras_model), Path(output_dir)
    require_java()
    executable = find_converter()
    if executable is None:
        raise PicosamError(f"{CONVERTER} not found on PATH: the build toolchain is missing ({install_hint('build')})")
    log_path = output_dir.parent / f"{CONVERTER}.log"
    started = time.perf_counter()
    with atomic_directory(output_dir) as work:
        command = [executable, "-i", str(keras_model), "-o", str(work), "--overwrite-output", "--report-size-unit", "B"]
        returncode, output = _run_streaming(command, on_line)
        with atomic_path(log_path) as tmp_log:
            tmp_log.write_text(output)
        if returncode != 0:
            raise PicosamError(
                f"{CONVERTER} failed on {keras_model.name} (exit {returncode}): "
                f"{_failure_line(output)} (log: {log_path})"
            )
        reports = sorted(work.glob("*_MemoryReport.json"))
        packer = work / "packerOut.zip"
        if not reports or not packer.is_file():
            raise PicosamError(f"{CONVERTER} produced no packerOut.zip / memory report (log: {log_path})")
        memory = parse_memory_report(reports[0])
        if not memory.fit_in_chip:
            # The output folder is discarded on failure; keep the report for the user.
            kept = output_dir.parent / reports[0].name
            shutil.copyfile(reports[0], kept)
            raise PicosamError(
                f"{keras_model.name} does not fit in the IMX500: needs {memory.memory_usage_mb:.2f} MB "
                f"of {memory.total_on_chip_mb:.2f} MB (report: {kept})"
            )
        tensors = parse_dnn_params(work / "dnnParams.xml")
    return ConversionResult(
        output_dir=output_dir,
        packer_out=output_dir / "packerOut.zip",
        log_path=log_path,
        converter_version=installed_version("imx500-converter"),
        memory=memory,
        inputs=tensors["inputs"],
        outputs=tensors["outputs"],
        seconds=time.perf_counter() - started,
    )
