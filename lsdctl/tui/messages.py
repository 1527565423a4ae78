"""Messages of the TUI: what happened, posted by widgets and screens, handled above them.

Dataclasses named in the past tense; Textual derives each handler's name from the class
(`RunSelected` → `on_run_selected`).
"""

from __future__ import annotations

from dataclasses import dataclass

from textual.message import Message

from daemon.schemas import BlockState


@dataclass
class RunSelected(Message):
    """A run was chosen (a table row, a GPU's holder): the app opens its detail screen."""

    run_id: str
    tab: str = "overview"


@dataclass
class DaemonLost(Message):
    """A request to the daemon failed: the app shows the banner (and polling retries)."""

    reason: str


@dataclass
class DaemonReached(Message):
    """A request to the daemon succeeded: the banner goes."""


@dataclass
class BlockSelected(Message):
    """The block map's cursor moved to a block (`block` is None while it is pending)."""

    task: str
    index: int
    grid: tuple[int, ...]
    block: BlockState | None


@dataclass
class RunHighlighted(Message):
    """The run table's cursor moved onto a run."""

    run_id: str


@dataclass
class ColumnClicked(Message):
    """A column header of the run table was clicked: sort by it."""

    column: str


@dataclass
class FieldHighlighted(Message):
    """The config form's cursor moved onto a field."""

    key: str


@dataclass
class FieldChosen(Message):
    """A config field was chosen for editing (enter, or a click on the highlighted one)."""

    key: str
