"""Every option of every verb says what it is for; one name per idea, old spellings hidden (issue 19)."""

from pathlib import Path

import click
import pytest
from click.testing import CliRunner

from firmware_packaging.cli import AliasOption
from imx500_picosam.cli import main


def commands(group=main, path=()):
    for name, command in sorted(group.commands.items()):
        if isinstance(command, click.Group):
            yield from commands(command, path + (name,))
        else:
            yield path + (name,), command


ALL = list(commands())


def test_the_walk_sees_every_verb():
    names = {" ".join(path) for path, _ in ALL}
    assert {"build", "segment", "demo", "train", "evaluate", "rpk inspect", "rpk set-intrinsics", "teacher cache",
            "data photos", "flash", "doctor"} <= names


@pytest.mark.parametrize("path, command", ALL, ids=[" ".join(path) for path, _ in ALL])
def test_every_option_has_help_text(path, command):
    missing = [param.opts[0] for param in command.params
               if isinstance(param, click.Option) and not param.hidden and not (param.help or "").strip()]
    assert not missing, f"picosam {' '.join(path)}: options without help: {missing}"
    shown = CliRunner().invoke(main, [*path, "--help"])
    assert shown.exit_code == 0, shown.output
    for param in command.params:
        if isinstance(param, AliasOption):
            for old in param._old:
                assert f"{old} " not in shown.output and f"{old}," not in shown.output, f"{old} shown in --help"


def test_one_name_per_idea():
    """--max-images (never --limit) for 'only the first N', --build for the build folder."""
    for path, command in ALL:
        visible = {opt for param in command.params if isinstance(param, click.Option)
                   for opt in param.opts if not (isinstance(param, AliasOption) and opt in param._old)}
        assert "--limit" not in visible, path
        if path[0] in ("build", "package", "flash"):
            assert "--build" in visible and "--out" not in visible, path


@pytest.mark.parametrize("old, new", [
    (("data", "photos", "--limit", "2"), ("data", "photos", "--max-images", "2")),
    (("rpk", "set-intrinsics", "x.rpk", "--json", "i.json"), ("rpk", "set-intrinsics", "x.rpk", "--intrinsics", "i.json")),
])
def test_old_spellings_are_still_accepted(old, new):
    for args in (old, new):
        ctx = main.make_context("picosam", [args[0]], resilient_parsing=True)
        command = main.get_command(ctx, args[0])
        if isinstance(command, click.Group):
            command = command.get_command(ctx, args[1])
            rest = list(args[2:])
        else:
            rest = list(args[1:])
        parsed = command.make_context(args[-1], rest, resilient_parsing=True).params
        assert parsed[{"photos": "limit", "set-intrinsics": "json_file"}[args[1]]] in (2, Path("i.json")), parsed
