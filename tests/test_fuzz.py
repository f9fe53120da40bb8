"""Issue 15: a seeded fuzz suite for the RPK reader/writer, the .pt reader and the annotation loader.

Each target runs in a child process (tests/fuzz_worker.py) under a 3 GB address-space
limit, so a regression that allocates without bound fails with MemoryError instead of
swapping, and with a per-case alarm, so a hang kills the child instead of the suite. Every
case must end in success or the one-line PicosamError: any other exception, a hang or a
signal fails the test and names the case (replay: ``python tests/fuzz_worker.py TARGET
SEED COUNT DIR MEMORY SECONDS`` runs cases 0..COUNT-1 of that seed).

PICOSAM_FUZZ_SEED changes the seed, PICOSAM_FUZZ_SCALE multiplies the case counts.
"""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

TESTS = Path(__file__).resolve().parent
RPK_FIXTURES = TESTS.parent.parent / "shared" / "fixtures" / "rpk"
SEED = int(os.environ.get("PICOSAM_FUZZ_SEED", "15"))
SCALE = float(os.environ.get("PICOSAM_FUZZ_SCALE", "1"))
MEMORY_LIMIT = 3 << 30
CASE_SECONDS = 20
CASES = {"rpk": 1500, "pt": 1000, "annotations": 1000}


@pytest.fixture(scope="module")
def totals():
    counts = {}
    yield counts
    if counts:
        cases = sum(c["cases"] for c in counts.values())
        clean = sum(c["clean_errors"] for c in counts.values())
        accepted = sum(c["accepted"] for c in counts.values())
        print(f"\nfuzz total (seed {SEED}): {cases} cases, {clean} clean errors, {accepted} accepted, "
              f"0 other exceptions, hangs or signals")


@pytest.mark.parametrize("target", sorted(CASES))
def test_fuzz_cases_end_in_success_or_one_line_error(target, tmp_path, totals):
    if target == "rpk" and not RPK_FIXTURES.is_dir():
        pytest.skip(f"vendor RPK fixtures not found at {RPK_FIXTURES}")
    count = max(1, int(CASES[target] * SCALE))
    done = subprocess.run(
        [sys.executable, str(TESTS / "fuzz_worker.py"), target, str(SEED), str(count), str(tmp_path),
         str(MEMORY_LIMIT), str(CASE_SECONDS)],
        capture_output=True, text=True, timeout=max(600, count), env=dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3"),
    )
    lines = done.stdout.splitlines()
    results = [line for line in lines if line.startswith("RESULT ")]
    if not results:
        started = [line for line in lines if line.startswith("case ")]
        how = f"signal {-done.returncode}" if done.returncode < 0 else f"exit {done.returncode}"
        pytest.fail(f"fuzz {target} seed {SEED}: the worker died ({how}) in {started[-1] if started else 'setup'}; "
                    f"stderr: {done.stderr[-1500:]}")
    result = json.loads(results[-1][len("RESULT "):])
    totals[target] = result
    print(f"\nfuzz {target} (seed {SEED}): {result['cases']} cases, {result['clean_errors']} clean errors, "
          f"{result['accepted']} accepted")
    assert result["failures"] == [], json.dumps(result["failures"][:5], indent=1)
    assert result["cases"] == count
    # Both outcomes occur, or the mutations are too tame (or too wild) to test anything.
    assert result["clean_errors"] > count // 20 and result["accepted"] > count // 50, result
