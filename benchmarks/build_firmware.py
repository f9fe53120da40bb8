"""Benchmark `make rpk`: checkpoint -> packerOut.zip, timed, with the converter's memory
figures and the float-vs-quantized agreement.

    .venv/bin/python benchmarks/build_firmware.py [--checkpoint C] [--gptq] [--repeat N]

Targets (issue: firmware build): <= 90 s wall clock on a 2-core machine, converter
memory usage <= 3.7 MB of 8 MB with Fit In Chip, agreement >= 0.95 mean IoU. The wall
clock includes Python start-up and TensorFlow import, as `make rpk` does; installing the
toolchain is excluded. Every run starts with an empty quantized-model cache (a first
`make rpk`); a second `make rpk` of the same checkpoint reuses the cached MCT model.
"""

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path


def run_once(checkpoint, gptq):
    with tempfile.TemporaryDirectory() as tmp:
        command = [sys.executable, "-m", "imx500_picosam", "build"]
        command += ["--checkpoint", str(checkpoint)] if checkpoint else []
        command += ["--gptq"] if gptq else []
        started = time.perf_counter()
        env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3", "PICOSAM_CACHE_DIR": str(Path(tmp) / "cache")}
        completed = subprocess.run(command + ["--build", str(Path(tmp) / "build")], capture_output=True, text=True, env=env)
        wall = time.perf_counter() - started
        if completed.returncode != 0:
            sys.exit(f"build failed: {completed.stderr.strip().splitlines()[-1]}")
        return wall, json.loads((Path(tmp) / "build" / "build_report.json").read_text())


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--checkpoint", type=Path, default=None)
    parser.add_argument("--gptq", action="store_true")
    parser.add_argument("--repeat", type=int, default=1)
    args = parser.parse_args()
    for run in range(1, args.repeat + 1):
        wall, report = run_once(args.checkpoint, args.gptq)
        converter, agreement = report["converter"], report["float_vs_quantized"]
        print(f"run {run}: make-rpk wall {wall:.1f} s (target <= 90 s) on {os.cpu_count()} cores")
        print("  stages: " + ", ".join(f"{k} {v:.1f} s" for k, v in report["stage_seconds"].items()))
        print(f"  converter memory {converter['memory_usage_mb']:.3f} MB of {converter['total_on_chip_mb']:.2f} MB "
              f"(target <= 3.7 MB), fit in chip {converter['fit_in_chip']}")
        print(f"  float vs quantized mean IoU {agreement['mean_iou']:.4f} (min {agreement['min_iou']:.4f}) "
              f"on {agreement['crops']} held-out crops (target >= 0.95); "
              f"checkpoint {report['checkpoint']['provenance']['kind']}")


if __name__ == "__main__":
    main()
