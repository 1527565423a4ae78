"""Every key of every screen, in one list."""

from __future__ import annotations

from typing import ClassVar

from rich.table import Table
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import VerticalScroll
from textual.screen import ModalScreen
from textual.widgets import Static


def _keys(binding: Binding) -> str:
    names = {
        "slash": "/",
        "question_mark": "?",
        "left_square_bracket": "[",
        "right_square_bracket": "]",
        "equals_sign": "=",
        "plus": "+",
        "minus": "-",
    }
    return ", ".join(names.get(k, k) for k in binding.key.split(","))


def bindings_table(bindings: list[BindingType]) -> Table:
    table = Table(box=None, show_header=False, pad_edge=False)
    table.add_column("key", style="bold", width=22, no_wrap=True)
    table.add_column("does", width=56)
    for binding in bindings:
        if isinstance(binding, Binding):
            table.add_row(_keys(binding), binding.description or binding.action)
        elif isinstance(binding, tuple):
            table.add_row(binding[0], binding[2] if len(binding) > 2 else binding[1])
    return table


def all_sections() -> list[tuple[str, list[BindingType]]]:
    from lsdctl.tui.app import LsdctlApp
    from lsdctl.tui.screens.config_editor import ConfigEditorScreen
    from lsdctl.tui.screens.gpus import GpusScreen
    from lsdctl.tui.screens.projects import ProjectsScreen
    from lsdctl.tui.screens.run_detail import RunDetailScreen
    from lsdctl.tui.screens.runs import RunsScreen
    from lsdctl.tui.widgets import BlockMap

    moves: list[BindingType] = [
        Binding("up,down", "", "Move the cursor"),
        Binding("enter", "", "Choose (open a run, edit a project)"),
    ]
    return [
        ("Everywhere", [*LsdctlApp.BINDINGS, *moves]),
        ("Runs", RunsScreen.BINDINGS),
        ("Run detail", RunDetailScreen.BINDINGS),
        ("Block map (Run detail of predict and segment runs)", BlockMap.BINDINGS),
        ("GPUs", GpusScreen.BINDINGS),
        ("Projects", ProjectsScreen.BINDINGS),
        ("Config editor", ConfigEditorScreen.BINDINGS),
    ]


class HelpScreen(ModalScreen[None]):
    CSS_PATH = "help.tcss"
    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("escape,question_mark,q", "dismiss", "Close help"),
    ]

    def compose(self) -> ComposeResult:
        with VerticalScroll(id="help"):
            yield Static("[b]lsdctl keys[/b]  (the mouse works too: click rows, tabs, headers)")
            for title, bindings in all_sections():
                yield Static(title, classes="help-title")
                yield Static(bindings_table(bindings), classes="help-keys")

    def on_mount(self) -> None:
        self.query_one("#help").focus()
