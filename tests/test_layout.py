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
                ("errors", "atomic", "hashing", "images", "toolchain", "metrics", "geometry")}


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
    assert "imx500_picosam.import_weights" in graph["imx500_picosam.resolve"]  # module level
    assert "imx500_picosam.teacher" in graph["imx500_picosam.evaluate"]  # inside a function
    assert "imx500_picosam.quantize" in graph["imx500_picosam.build"]  # `from . import quantize`
    assert "imx500_picosam.engines" in graph["imx500_picosam.runtime.emulator"]  # `from ..engines import`
    assert "firmware_packaging.rpk" in graph["imx500_picosam.package"]  # absolute


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


def test_the_flash_bundle_imports_on_its_own(tmp_path):
    """``picosam flash`` ships only REMOTE_MODULES to the Pi: the Pi-side modules must import
    from a copy holding just those files (the flash tests that would show it need sshd)."""
    import shutil
    import subprocess
    import sys

    from imx500_picosam.flash import REMOTE_MODULES

    for package, names in REMOTE_MODULES.items():
        (tmp_path / package).mkdir()
        for name in names:
            shutil.copyfile(ROOT / package / name, tmp_path / package / name)
    code = "import imx500_picosam.flash_remote, imx500_picosam.smoke, firmware_packaging.rpk"
    done = subprocess.run([sys.executable, "-S", "-c", code], cwd=tmp_path, capture_output=True, text=True,
                          env={"PYTHONPATH": str(tmp_path)})
    assert done.returncode == 0, done.stderr
