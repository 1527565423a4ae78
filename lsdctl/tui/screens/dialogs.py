"""Small modal screens: a yes/no question, the new-run form, the new-project form, and
the config diff shown before saving."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import TYPE_CHECKING, ClassVar, TypeVar, cast

from textual import on, work
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Horizontal, Vertical, VerticalScroll
from textual.markup import escape
from textual.screen import ModalScreen
from textual.widgets import Button, Input, Label, Select, Static

from daemon.schemas import RunCreate, RunInfo, RunKind
from engine.errors import InputError
from engine.project import config as cfg
from engine.project.layout import init_project, list_projects
from lsdctl.errors import LsdctlError

if TYPE_CHECKING:
    from lsdctl.tui.app import LsdctlApp

T = TypeVar("T")
KINDS: tuple[RunKind, ...] = ("train", "predict", "segment", "evaluate")


class Dialog(ModalScreen[T]):
    CSS_PATH = "dialogs.tcss"

    @property
    def tui(self) -> LsdctlApp:
        return cast("LsdctlApp", self.app)

    def _error(self, message: str) -> None:
        note = self.query_one("#form-error", Static)
        note.update(escape(message))
        note.set_class(bool(message), "-shown")


class ConfirmDialog(Dialog[bool]):
    """A question answered with y or n (or the buttons)."""

    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("y", "answer(True)", "Yes"),
        Binding("n", "answer(False)", "No"),
        Binding("escape", "answer(False)", "No", show=False),
    ]

    def __init__(self, question: str) -> None:
        super().__init__()
        self.question = question

    def compose(self) -> ComposeResult:
        with Vertical(classes="dialog"):
            yield Label(escape(self.question), classes="question")
            with Horizontal(classes="buttons"):
                yield Button("Yes (y)", variant="error", id="yes")
                yield Button("No (n)", id="no")

    def action_answer(self, yes: bool) -> None:
        self.dismiss(yes)

    @on(Button.Pressed)
    def _pressed(self, event: Button.Pressed) -> None:
        self.dismiss(event.button.id == "yes")


class NewRunDialog(Dialog[RunInfo | None]):
    """Kind, project, preset and workers; submitted to the daemon, refusals shown here."""

    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("escape", "dismiss(None)", "Cancel"),
        Binding("ctrl+s", "submit", "Submit"),
    ]

    def __init__(self, projects_root: Path) -> None:
        super().__init__()
        self.projects_root = projects_root

    def compose(self) -> ComposeResult:
        projects = [(p.name, str(p.path.absolute())) for p in list_projects(self.projects_root)]
        with Vertical(classes="dialog form"):
            yield Label("New run", classes="title")
            yield Label("Kind")
            yield Select([(k, k) for k in KINDS], value="train", allow_blank=False, id="kind")
            yield Label("Project")
            yield Select(
                projects,
                value=projects[0][1] if projects else Select.NULL,
                prompt="no project: press 3, then n",
                id="project",
            )
            yield Label("Preset (rebases the project's config first)")
            yield Select(
                [(p, p) for p in cfg.preset_names()], prompt="the project's own", id="preset"
            )
            yield Label("Workers (blockwise runs)")
            yield Input("1", type="integer", id="workers")
            yield Static(id="form-error")
            with Horizontal(classes="buttons"):
                yield Button("Submit (ctrl+s)", variant="primary", id="submit")
                yield Button("Cancel (esc)", id="cancel")

    def request(self) -> RunCreate | None:
        project = self.query_one("#project", Select).value
        if project is Select.NULL:
            self._error("choose a project (none yet: create one on the Projects screen)")
            return None
        preset = self.query_one("#preset", Select).value
        text = self.query_one("#workers", Input).value.strip() or "1"
        try:
            workers = int(text)
            if workers < 1:
                raise ValueError
        except ValueError:
            self._error(f"workers must be a whole number of at least 1, not {text!r}")
            return None
        kind = self.query_one("#kind", Select).value
        if kind not in KINDS:
            self._error("choose a kind of run")
            return None
        return RunCreate(
            kind=kind,
            project=str(project),
            preset=None if preset is Select.NULL else str(preset),
            workers=workers,
        )

    @on(Button.Pressed, "#submit")
    @on(Input.Submitted)
    def action_submit(self) -> None:
        request = self.request()
        if request is not None:
            self._error("")
            self._submit(request)

    @on(Button.Pressed, "#cancel")
    def _cancel(self) -> None:
        self.dismiss(None)

    @work(exclusive=True)
    async def _submit(self, request: RunCreate) -> None:
        try:
            run = await self.tui.client.submit(request)
        except LsdctlError as exc:
            self._error(str(exc))
            return
        self.dismiss(run)


class NewProjectDialog(Dialog[str | None]):
    """A name and a dataset preset: `lsdctl init NAME --preset PRESET`."""

    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("escape", "dismiss(None)", "Cancel"),
        Binding("ctrl+s", "create", "Create"),
    ]

    def __init__(self, projects_root: Path) -> None:
        super().__init__()
        self.projects_root = projects_root

    def compose(self) -> ComposeResult:
        presets = cfg.preset_names()
        with Vertical(classes="dialog form"):
            yield Label("New project", classes="title")
            yield Label("Name")
            yield Input(placeholder="letters, digits, '_', '.', '-'", id="name")
            yield Label("Dataset preset")
            yield Select(
                [(p, p) for p in presets],
                value=cfg.DEFAULT_PRESET,
                allow_blank=False,
                id="preset",
            )
            yield Static(id="form-error")
            with Horizontal(classes="buttons"):
                yield Button("Create (ctrl+s)", variant="primary", id="create")
                yield Button("Cancel (esc)", id="cancel")

    @on(Button.Pressed, "#create")
    @on(Input.Submitted)
    def action_create(self) -> None:
        name = self.query_one("#name", Input).value.strip()
        preset = str(self.query_one("#preset", Select).value)
        self._create(name, preset)

    @on(Button.Pressed, "#cancel")
    def _cancel(self) -> None:
        self.dismiss(None)

    @work(exclusive=True)
    async def _create(self, name: str, preset: str) -> None:
        try:
            await asyncio.to_thread(init_project, name, preset, False, self.projects_root)
        except InputError as exc:
            self._error(str(exc))
            return
        self.dismiss(name)


class SaveConfigDialog(Dialog[bool]):
    """The changes against the preset, each marked when this edit made it; y saves."""

    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("y", "answer(True)", "Save"),
        Binding("n", "answer(False)", "Don't save"),
        Binding("escape", "answer(False)", "Don't save", show=False),
    ]

    def __init__(self, title: str, diff: str) -> None:
        super().__init__()
        self.title_text = title
        self.diff = diff

    def compose(self) -> ComposeResult:
        with Vertical(classes="dialog wide"):
            yield Label(escape(self.title_text), classes="title")
            with VerticalScroll(id="diff"):
                yield Static(self.diff, id="diff-text")
            with Horizontal(classes="buttons"):
                yield Button("Save (y)", variant="primary", id="yes")
                yield Button("Don't save (n)", id="no")

    def action_answer(self, yes: bool) -> None:
        self.dismiss(yes)

    @on(Button.Pressed)
    def _pressed(self, event: Button.Pressed) -> None:
        self.dismiss(event.button.id == "yes")
