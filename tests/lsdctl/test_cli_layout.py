"""A newcomer finds `lsdctl X` in lsdctl/cli/X.py (issue 15): every command comes from
the module of its name, and a sub-command from the module of its group (`lsdctl run
show`: run.py; `lsdctl data fetch cremi`: fetch.py)."""

from __future__ import annotations

from collections.abc import Iterator

import typer

from lsdctl.cli.main import app


def _placements(group: typer.Typer, path: tuple[str, ...]) -> Iterator[tuple[tuple[str, ...], str]]:
    """(command path, module of its function) for every command under `group`."""
    for info in group.registered_commands:
        assert info.callback is not None
        name = info.name or info.callback.__name__.replace("_", "-")
        yield (*path, name), info.callback.__module__
    for sub in group.registered_groups:
        assert sub.name is not None and sub.typer_instance is not None
        yield from _placements(sub.typer_instance, (*path, sub.name))


def test_lsdctl_x_lives_in_lsdctl_cli_x() -> None:
    placements = dict(_placements(app, ()))
    assert len(placements) >= 30  # every command, sub-commands included
    misplaced = {
        " ".join(path): module
        for path, module in placements.items()
        if module != f"lsdctl.cli.{path[-2] if len(path) > 1 else path[0]}"
    }
    assert not misplaced, f"commands outside lsdctl/cli/<command or group>.py: {misplaced}"
