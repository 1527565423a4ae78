"""Write docs/cli.md, the command reference, from the typer app itself.

    .venv/bin/python scripts/gen_cli_docs.py            # rewrite docs/cli.md
    .venv/bin/python scripts/gen_cli_docs.py --check    # exit 1 if docs/cli.md is stale

Every command and sub-command of `lsdctl.cli.main.app`, in the order `lsdctl --help`
lists them, with its help text, usage line, arguments and options (as `--help` shows
them, without the terminal's boxes). tests/test_docs.py fails when the file differs
from a fresh generation, so the reference cannot drift from the code.
"""

from __future__ import annotations

import re
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import typer.main

ROOT = Path(__file__).resolve().parents[1]
OUTPUT = ROOT / "docs" / "cli.md"

HEADER = """\
# Command reference

Generated from the typer app by `scripts/gen_cli_docs.py`; do not edit by hand (the
test suite fails when this file and the code disagree). `lsdctl COMMAND --help` prints
the same text in the terminal.
"""

# Characters Markdown would read as markup in running text (outside `code`).
_MARKUP = re.compile(r"([<*|])")


def walk(command: Any, ctx: Any) -> Iterator[tuple[Any, Any]]:
    """(command, its click context) for `command` and everything below it, depth first."""
    yield command, ctx
    for name in getattr(command, "commands", {}):
        sub = command.commands[name]
        if sub.hidden:
            continue
        yield from walk(sub, type(ctx)(sub, info_name=name, parent=ctx))


def render(app: typer.Typer, prog: str = "lsdctl") -> str:
    root = typer.main.get_command(app)
    context_class = root.context_class
    out = [HEADER]
    pages = list(walk(root, context_class(root, info_name=prog)))
    out.append("## Commands\n")
    for _command, ctx in pages[1:]:
        indent = "  " * (ctx.command_path.count(" ") - 1)
        out.append(f"{indent}- [`{ctx.command_path}`](#{_anchor(ctx.command_path)})")
    out.append("")
    for command, ctx in pages:
        out.append(_section(command, ctx))
    return "\n".join(out).rstrip() + "\n"


def _anchor(title: str) -> str:
    # GitHub's heading ids: lower case, spaces to '-', punctuation dropped.
    return re.sub(r"[^a-z0-9 _-]", "", title.lower()).replace(" ", "-")


def _section(command: Any, ctx: Any) -> str:
    usage = " ".join([ctx.command_path, *command.collect_usage_pieces(ctx)])
    lines = [f"## {ctx.command_path}", "", "```", usage, "```", ""]
    lines += [_help_text(command.help or ""), ""]
    params = [p for p in command.get_params(ctx) if not getattr(p, "hidden", False)]
    records = [(p, p.get_help_record(ctx)) for p in params]
    records = [(p, r) for p, r in records if r is not None and r[0] != "--help"]
    if records:
        lines += ["| argument or option | description |", "|---|---|"]
        for _param, (opts, text) in records:
            lines.append(f"| `{opts}` | {_escape(' '.join(text.split()))} |")
        lines.append("")
    subcommands = [n for n in getattr(command, "commands", {}) if not command.commands[n].hidden]
    if subcommands:
        lines.append("Commands: " + ", ".join(f"`{ctx.command_path} {n}`" for n in subcommands))
        lines.append("")
    return "\n".join(lines)


def _help_text(text: str) -> str:
    """Docstring paragraphs as Markdown; a paragraph of `lsdctl …` lines becomes code."""
    paragraphs = [p for p in re.split(r"\n\s*\n", text.strip()) if p.strip()]
    out: list[str] = []
    code: list[str] = []  # consecutive example paragraphs share one block
    for paragraph in paragraphs:
        lines = [line.strip() for line in paragraph.splitlines()]
        if all(line.startswith("lsdctl ") for line in lines):
            code += lines
            continue
        if code:
            out.append("```\n" + "\n".join(code) + "\n```")
            code = []
        out.append(_escape(" ".join(lines)))
    if code:
        out.append("```\n" + "\n".join(code) + "\n```")
    return "\n\n".join(out)


def _escape(text: str) -> str:
    """Markup characters escaped, except inside `code` spans."""
    parts = text.split("`")
    for i in range(0, len(parts), 2):
        parts[i] = _MARKUP.sub(r"\\\1", parts[i])
    return "`".join(parts)


def main(argv: list[str]) -> int:
    from lsdctl.cli.main import app

    text = render(app)
    if argv[1:] == ["--check"]:
        if not OUTPUT.is_file() or OUTPUT.read_text() != text:
            print(f"{OUTPUT.relative_to(ROOT)} is stale: run scripts/gen_cli_docs.py")
            return 1
        return 0
    if argv[1:]:
        print(__doc__)
        return 2
    OUTPUT.parent.mkdir(parents=True, exist_ok=True)
    OUTPUT.write_text(text)
    print(f"wrote {OUTPUT.relative_to(ROOT)}")
    return 0


if __name__ == "__main__":
    sys.path.insert(0, str(ROOT))
    sys.exit(main(sys.argv))
