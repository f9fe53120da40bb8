"""The module layout: no import loops, firmware_packaging below imx500_picosam, a ground floor
of helpers that import no stage (docs/layout.md).

Every import statement counts, at module level or inside a function: a lazy import is still a
dependency, and a loop through one only hides until someone moves it.
"""

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("imx500_picosam", "firmware_packaging")
# Helpers every stage may use; they import only each other (and firmware_packaging's errors and
# file-mode rule, which the RPK tools share without importing imx500_picosam).
FIRMWARE_PACKAGING_SHARED = {"firmware_packaging.errors", "firmware_packaging.files"}
GROUND_FLOOR = {f"imx500_picosam.{name}" for name in
                ("errors", "atomic", "lock", "hashing", "images", "toolchain", "metrics", "geometry", "extras",
                 "calibration")}
# The stage folders, bottom up (docs/layout.md): each may import the ground floor and the folders
# listed as below it, never one above it or beside it.
FLOORS = {
    "model": set(),
    "firmware": {"model"},
    "learn": {"model", "firmware"},
    "runtime": {"model", "firmware"},
    "deploy": {"model", "firmware"},
}
# The roof: the CLI and the Python API, which may import every stage and which nothing imports
# (the package's own __init__ only re-exports the API, lazily).
ROOF = {"imx500_picosam.cli", "imx500_picosam.__main__", "imx500_picosam.predictor"}


def module_files():
    for package in PACKAGES:
        for path in sorted((ROOT / package).rglob("*.py")):
            parts = list(path.relative_to(ROOT).with_suffix("").parts)
            if parts[-1] == "__init__":
                parts = parts[:-1]
            yield ".".join(parts), path


def import_graph():
    """{module: {internal modules it imports}} from every import statement in the file."""
    files = dict(module_files())
    graph = {}
    for module, path in files.items():
        is_package = path.name == "__init__.py"
        here = module if is_package else module.rsplit(".", 1)[0]
        targets = set()
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.Import):
                targets.update(alias.name for alias in node.names)
            elif isinstance(node, ast.ImportFrom):
                if node.level:
                    base = here.split(".")
                    base = base[: len(base) - (node.level - 1)]
                    source = ".".join(base + ([node.module] if node.module else []))
                else:
                    source = node.module
                targets.add(source)
                # `from . import x` and `from pkg import module` import the submodules themselves.
                targets.update(f"{source}.{alias.name}" for alias in node.names)
        graph[module] = {t for t in targets if t in files and t != module}
    return graph


def find_cycle(graph):
    state, stack = {}, []

    def visit(node):
        state[node] = "open"
        stack.append(node)
        for target in sorted(graph[node]):
            if state.get(target) == "open":
                return stack[stack.index(target):] + [target]
            if target not in state:
                found = visit(target)
                if found:
                    return found
        stack.pop()
        state[node] = "done"
        return None

    for node in sorted(graph):
        if node not in state:
            found = visit(node)
            if found:
                return found
    return None


def test_the_graph_is_read_from_every_kind_of_import():
    graph = import_graph()
    assert "imx500_picosam.model.import_weights" in graph["imx500_picosam.model.resolve"]  # module level
    assert "imx500_picosam.learn.teacher" in graph["imx500_picosam.learn.evaluate"]  # inside a function
    assert "imx500_picosam.firmware.quantize" in graph["imx500_picosam.firmware.build"]  # `from . import quantize`
    assert "imx500_picosam.model.runners" in graph["imx500_picosam.runtime.emulator"]  # `from ..model.runners import`
    assert "firmware_packaging.rpk" in graph["imx500_picosam.firmware.package"]  # absolute


def test_there_is_no_import_loop():
    cycle = find_cycle(import_graph())
    assert cycle is None, "import loop: " + " -> ".join(cycle)


def test_a_loop_would_be_found():
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b"}, "b": set()}) is None


def test_firmware_packaging_stands_on_its_own():
    graph = import_graph()
    for module, targets in graph.items():
        if module.startswith("firmware_packaging"):
            assert not [t for t in targets if t.startswith("imx500_picosam")], module


def test_the_ground_floor_imports_no_stage():
    graph = import_graph()
    for module in sorted(GROUND_FLOOR):
        stages = sorted(t for t in graph[module] if t not in GROUND_FLOOR and t not in FIRMWARE_PACKAGING_SHARED)
        assert not stages, f"{module} imports {stages}"


def folder_of(module):
    """'model', 'firmware', ... for a module in a stage folder; 'ground' or 'roof' at the top."""
    parts = module.split(".")
    if parts[0] != "imx500_picosam":
        return "firmware_packaging"
    if module in ROOF or module == "imx500_picosam":
        return "roof"
    if len(parts) > 2 or parts[1] in FLOORS:
        return parts[1]
    return "ground"


def test_every_module_lives_on_a_known_floor():
    graph = import_graph()
    top = {m for m in graph if m.startswith("imx500_picosam.") and m.count(".") == 1 and m.split(".")[1] not in FLOORS}
    assert top <= GROUND_FLOOR | ROOF, f"modules at the top that are neither ground nor roof: {sorted(top - GROUND_FLOOR - ROOF)}"


def wrong_arrows(graph):
    """Arrows that go up or sideways between the stage folders. ``imx500_picosam`` itself is
    reached by every ``from .. import x``; the package's __init__ holds only lazy re-exports."""
    wrong = []
    for module, targets in sorted(graph.items()):
        here = folder_of(module)
        if here in ("roof", "firmware_packaging", "ground"):
            continue
        for target in sorted(targets):
            there = folder_of(target)
            if target == "imx500_picosam" or there in ("ground", "firmware_packaging") or there == here \
                    or there in FLOORS[here]:
                continue
            wrong.append(f"{module} ({here}) imports {target} ({there})")
    return wrong


def test_every_import_arrow_points_down():
    wrong = wrong_arrows(import_graph())
    assert not wrong, "\n".join(wrong)


def test_nothing_imports_the_roof():
    graph = import_graph()
    for module, targets in graph.items():
        if module in ROOF or module == "imx500_picosam":
            continue
        assert not targets & ROOF, f"{module} imports {sorted(targets & ROOF)}"


def test_a_wrong_arrow_would_be_found():
    graph = {"imx500_picosam.model.resolve": {"imx500_picosam.learn.train", "imx500_picosam.errors"},
             "imx500_picosam.learn.train": {"imx500_picosam.model.resolve", "imx500_picosam.firmware.engines"},
             "imx500_picosam.firmware.engines": {"imx500_picosam.deploy.flash"},
             "imx500_picosam.runtime.session": {"imx500_picosam.learn.data"}}
    assert wrong_arrows(graph) == [
        "imx500_picosam.firmware.engines (firmware) imports imx500_picosam.deploy.flash (deploy)",
        "imx500_picosam.model.resolve (model) imports imx500_picosam.learn.train (learn)",
        "imx500_picosam.runtime.session (runtime) imports imx500_picosam.learn.data (learn)"]


def test_the_flash_bundle_imports_on_its_own(tmp_path):
    """``picosam flash`` ships only REMOTE_MODULES to the Pi: the Pi-side modules must import
    from a copy holding just those files (the flash tests that would show it need sshd)."""
    import shutil
    import subprocess
    import sys

    from imx500_picosam.deploy.flash import REMOTE_MODULES

    for package, names in REMOTE_MODULES.items():
        for name in names:
            (tmp_path / package / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(ROOT / package / name, tmp_path / package / name)
    code = "import imx500_picosam.deploy.flash_remote, imx500_picosam.deploy.smoke, firmware_packaging.rpk"
    done = subprocess.run([sys.executable, "-S", "-c", code], cwd=tmp_path, capture_output=True, text=True,
                          env={"PYTHONPATH": str(tmp_path)})
    assert done.returncode == 0, done.stderr
