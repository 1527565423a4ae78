"""The real-data recipes in docs/ run as written, at 20 training iterations.

The commands are read from the recipe's ```sh blocks, so the page and the test cannot
disagree. Each block is checked as shell (`bash -n`) and then run in this process
through the typer app, line by line, with two substitutions: `--iterations N` becomes
`--iterations 20`, and `../shared/data` the shared data folder of this checkout. A
recipe may use `lsdctl` lines and `for VAR in $(seq A B); do … done` loops, nothing
else (the test says so when a page strays). Projects go to a temporary folder.
"""

from __future__ import annotations

import json
import math
import re
import shlex
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import SHARED_DATA, CliCaller

ROOT = Path(__file__).parents[1]
ITERATIONS = "20"
_SH_BLOCK = re.compile(r"^```sh[ \t]*\n(.*?)^```[ \t]*$", re.M | re.S)
_FOR = re.compile(r"for (\w+) in \$\(seq (\d+) (\d+)\); do$")


def recipe_blocks(page: str) -> list[str]:
    blocks = _SH_BLOCK.findall((ROOT / "docs" / page).read_text())
    assert blocks, f"docs/{page} has no ```sh blocks"
    return blocks


def expand(block: str) -> Iterator[list[str]]:
    """The argument lists of the `lsdctl` commands a block runs, loops unrolled."""
    lines = [
        line.strip()
        for line in re.sub(r"\\\n\s*", " ", block).splitlines()
        if line.strip() and not line.strip().startswith("#")
    ]
    i = 0
    while i < len(lines):
        loop = _FOR.fullmatch(lines[i])
        if loop:
            end = lines.index("done", i)
            name, first, last = loop.group(1), int(loop.group(2)), int(loop.group(3))
            for value in range(first, last + 1):
                for body in lines[i + 1 : end]:
                    yield _words(re.sub(rf"\$\{{?{name}\}}?", str(value), body))
            i = end + 1
            continue
        yield _words(lines[i])
        i += 1


def _words(line: str) -> list[str]:
    words = shlex.split(line, comments=True)
    assert words[:1] == ["lsdctl"], f"recipes run lsdctl commands and seq loops only: {line}"
    assert "$" not in line, f"unexpanded shell variable: {line}"
    out = []
    for i, word in enumerate(words[1:], start=1):
        if words[i - 1] == "--iterations":
            word = ITERATIONS
        out.append(word.replace("../shared/data", str(SHARED_DATA)))
    return out


def run_recipe(
    page: str, cli: CliCaller, projects: Path, monkeypatch: pytest.MonkeyPatch
) -> tuple[str, list[str]]:
    """Run every command of the page; the project name and a timing line per command."""
    monkeypatch.chdir(ROOT)
    monkeypatch.setenv("LSDCTL_HOME", str(projects.parent / "home"))  # never the user's daemon
    timings = []
    project = None
    for block in recipe_blocks(page):
        syntax = subprocess.run(["bash", "-n"], input=block, capture_output=True, text=True)
        assert syntax.returncode == 0, syntax.stderr
        for args in expand(block):
            if args[0] == "init":
                project = args[1]
            start = time.monotonic()
            result = cli(*args)
            assert result.exit_code == 0, f"lsdctl {shlex.join(args)}:\n{result.output[-3000:]}"
            timings.append(f"{time.monotonic() - start:6.1f} s  lsdctl {shlex.join(args)[:80]}")
    assert project is not None, f"docs/{page} creates no project (lsdctl init)"
    return project, timings


def assert_finite_scores(projects: Path, project: str) -> dict[str, float]:
    found = sorted((projects / project / "runs").glob("evaluate-*/metrics.json"))
    assert found, "the recipe ran no evaluation"
    metrics = json.loads(found[-1].read_text())
    # Recipes validate: the headline's threshold is chosen on their val/ volumes.
    assert metrics["chosen_on"] == "validation", metrics["chosen_on"]
    best = metrics["headline"]
    for key in ("voi_split", "voi_merge", "arand"):
        assert math.isfinite(best[key]) and best[key] >= 0, (key, best)
    return {key: best[key] for key in ("voi_split", "voi_merge", "arand")}


def test_recipes_are_made_of_commands_the_test_can_run() -> None:
    # Fast and without data: the pages parse into lsdctl commands (loops unrolled).
    for page in ("recipe-gala-3d.md", "recipe-2d-tutorial.md"):
        commands = [args for block in recipe_blocks(page) for args in expand(block)]
        kinds = [args[0] for args in commands]
        for step in ("init", "data", "train", "predict", "segment", "evaluate"):
            assert step in kinds, f"docs/{page} has no `lsdctl {step}`"
        assert any("--iterations" in args for args in commands if args[0] == "train")


@pytest.mark.slow
@pytest.mark.skipif(not (SHARED_DATA / "gala").is_dir(), reason="shared gala data absent")
def test_gala_3d_recipe(cli: CliCaller, projects: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    project, timings = run_recipe("recipe-gala-3d.md", cli, projects, monkeypatch)
    scores = assert_finite_scores(projects, project)
    print("\n".join(timings), scores)  # shown with -rP or -s


@pytest.mark.slow
@pytest.mark.skipif(
    not (SHARED_DATA / "lsd-tutorial-2d").is_dir(), reason="shared 2D tutorial data absent"
)
def test_2d_tutorial_recipe(
    cli: CliCaller, projects: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    project, timings = run_recipe("recipe-2d-tutorial.md", cli, projects, monkeypatch)
    scores = assert_finite_scores(projects, project)
    metrics = sorted((projects / project / "runs").glob("evaluate-*/metrics.json"))[-1]
    volumes = json.loads(metrics.read_text())["volumes"]
    assert len(volumes) == 5, "patches 15-19 are all scored"
    print("\n".join(timings), scores)  # shown with -rP or -s
