"""The documentation stays true: the CLI reference is current, links resolve, and every
`lsdctl` command shown in a docs shell block names a real command with real options."""

from __future__ import annotations

import importlib.util
import re
import shlex
import subprocess
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
import typer.main

from engine.models.registry import MODEL_TYPES, names_of
from lsdctl.cli.main import app

ROOT = Path(__file__).parents[1]
DOCS = ROOT / "docs"
PAGES = [*sorted(DOCS.glob("*.md")), ROOT / "README.md"]

_FENCE = re.compile(r"^```.*?^```[ \t]*$", re.M | re.S)
_SH_BLOCK = re.compile(r"^```sh[ \t]*\n(.*?)^```[ \t]*$", re.M | re.S)
_LINK = re.compile(r"\[[^\]]*\]\(([^)\s]+)\)")
_HEADING = re.compile(r"^#{1,6}\s+(.+?)\s*$", re.M)


def _load_generator(name: str = "gen_cli_docs") -> ModuleType:
    spec = importlib.util.spec_from_file_location(name, ROOT / f"scripts/{name}.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_cli_reference_is_generated_from_the_current_cli() -> None:
    generator = _load_generator()
    fresh = generator.render(app)
    assert (DOCS / "cli.md").read_text() == fresh, (
        "docs/cli.md is stale: run .venv/bin/python scripts/gen_cli_docs.py"
    )
    # Every command is in it, sub-commands included.
    for path in ("lsdctl data fetch cremi", "lsdctl config import", "lsdctl daemon status"):
        assert f"\n## {path}\n" in fresh


def test_model_types_page_is_generated_from_the_registry() -> None:
    fresh = _load_generator("gen_model_docs").render()
    assert (DOCS / "models.md").read_text() == fresh, (
        "docs/models.md is stale: run .venv/bin/python scripts/gen_model_docs.py"
    )
    for name in MODEL_TYPES:
        assert f"| `{name}` |" in fresh


def test_prose_lists_of_model_types_match_the_registry() -> None:
    # The README and the CLI's help name every type; a type added to the registry must
    # show up there too.
    everything = ", ".join(MODEL_TYPES)
    readme = " ".join((ROOT / "README.md").read_text().split())
    assert f"({everything};" in readme
    assert f"{names_of()}." in (DOCS / "cli.md").read_text()


def _anchors(page: Path) -> set[str]:
    text = _FENCE.sub("", page.read_text())
    return {
        re.sub(r"[^a-z0-9 _-]", "", h.lower().replace("`", "")).strip().replace(" ", "-")
        for h in _HEADING.findall(text)
    }


def _links(page: Path) -> list[str]:
    text = _FENCE.sub("", page.read_text())
    text = re.sub(r"`[^`\n]*`", "", text)  # links inside code spans are not links
    return _LINK.findall(text)


@pytest.mark.parametrize("page", PAGES, ids=lambda p: p.name)
def test_relative_links_point_to_existing_files(page: Path) -> None:
    broken = []
    for target in _links(page):
        if re.match(r"[a-z]+:", target):  # http:, https:, mailto:
            continue
        path, _, anchor = target.partition("#")
        file = (page.parent / path).resolve() if path else page
        if not file.exists():
            broken.append(f"{target}: no file {file}")
        elif anchor and file.suffix == ".md" and anchor not in _anchors(file):
            broken.append(f"{target}: no heading #{anchor} in {file.name}")
    assert not broken, f"{page.name}: " + "; ".join(broken)


def test_the_docs_index_lists_every_page() -> None:
    index = (DOCS / "index.md").read_text()
    for page in DOCS.glob("*.md"):
        if page.name != "index.md":
            assert f"]({page.name})" in index, f"docs/index.md does not link {page.name}"


def _commands() -> dict[tuple[str, ...], Any]:
    """Command path (without 'lsdctl') → click command, for every leaf command."""
    found: dict[tuple[str, ...], Any] = {}

    def walk(command: Any, path: tuple[str, ...]) -> None:
        subs = getattr(command, "commands", None)
        if subs:
            for name, sub in subs.items():
                walk(sub, (*path, name))
        else:
            found[path] = command

    walk(typer.main.get_command(app), ())
    return found


def shell_lines(block: str) -> list[str]:
    """The logical lines of a shell block: continuations joined, blank lines dropped."""
    joined = re.sub(r"\\\n\s*", " ", block)
    return [line.strip() for line in joined.splitlines() if line.strip()]


@pytest.mark.parametrize("page", PAGES, ids=lambda p: p.name)
def test_lsdctl_commands_in_shell_blocks_exist_with_their_options(page: Path) -> None:
    blocks = _SH_BLOCK.findall(page.read_text())
    commands = _commands()
    problems = []
    for block in blocks:
        syntax = subprocess.run(["bash", "-n"], input=block, capture_output=True, text=True)
        assert syntax.returncode == 0, f"{page.name}: not valid shell:\n{block}\n{syntax.stderr}"
        for line in shell_lines(block):
            if not line.startswith("lsdctl "):
                continue
            words = shlex.split(line.replace("$", ""), comments=True)[1:]
            path = next(
                (p for p in sorted(commands, key=len, reverse=True) if tuple(words[: len(p)]) == p),
                None,
            )
            if path is None:
                problems.append(f"unknown command: {line}")
                continue
            known = {o for p in commands[path].params for o in (*p.opts, *p.secondary_opts)}
            for word in words[len(path) :]:
                option = word.split("=", 1)[0]
                if re.match(r"-[-a-zA-Z]", option) and option not in known | {"--help"}:
                    problems.append(f"unknown option {option}: {line}")
    assert not problems, f"{page.name}:\n" + "\n".join(problems)
