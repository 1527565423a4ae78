"""Runs: every run with its state, progress, ETA, loss and GPUs; filter, sort, open,
cancel, resume, follow its log, or start a new one."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any, ClassVar

from textual import on
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.widgets import Footer, Input, Static

from daemon.schemas import RunInfo, RunState
from lsdctl.tui import format as fmt
from lsdctl.tui.messages import ColumnClicked, RunHighlighted, RunSelected
from lsdctl.tui.screens.base import RunActionsScreen
from lsdctl.tui.screens.dialogs import NewRunDialog
from lsdctl.tui.widgets import DaemonBanner, NavBar, RunTable

# The newest runs fetched per refresh; the status line says when there are more.
RUN_LIMIT = 2000
SORTS = ("newest", "state", "project", "kind", "progress", "loss")
_STATE_ORDER = {
    s: i
    for i, s in enumerate(("running", "queued", "failed", "interrupted", "cancelled", "succeeded"))
}
_FIELDS = ("project", "kind", "state")


def matches(run: RunInfo, terms: Sequence[str]) -> bool:
    """`project:p`, `kind:train`, `state:running` match exactly; other words match any
    of id, project, kind and state in part (all terms must match)."""
    values = {"id": run.id, "project": run.project, "kind": run.kind, "state": run.state.value}
    for term in terms:
        field, sep, wanted = term.partition(":") if ":" in term else term.partition("=")
        field = field.lower()
        if sep and field in _FIELDS:
            if values[field].lower() != wanted.lower():
                return False
        elif not any(term.lower() in v.lower() for v in values.values()):
            return False
    return True


def sort_key(sort: str) -> Callable[[RunInfo], Any]:
    """Ties (and `newest`) go newest first."""
    if sort == "state":
        return lambda r: (_STATE_ORDER.get(r.state.value, 9), -r.created.timestamp())
    if sort == "project":
        return lambda r: (r.project, -r.created.timestamp())
    if sort == "kind":
        return lambda r: (r.kind, -r.created.timestamp())
    if sort == "progress":
        return lambda r: (
            -(r.progress_done or 0) / r.progress_total if r.progress_total else 1.0,
            -r.created.timestamp(),
        )
    if sort == "loss":
        return lambda r: (r.latest_loss is None, r.latest_loss or 0.0, -r.created.timestamp())
    return lambda r: -r.created.timestamp()


class RunsScreen(RunActionsScreen):
    CSS_PATH = "runs.tcss"
    AUTO_FOCUS = "#run-table"
    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("enter", "open", "Open"),
        Binding("c", "cancel_run", "Cancel"),
        Binding("r", "resume_run", "Resume"),
        Binding("l", "logs", "Logs"),
        Binding("v", "view_run", "View"),
        Binding("n", "new_run", "New run"),
        Binding("slash", "filter", "Filter"),
        Binding("s", "cycle_sort", "Sort"),
        Binding("S", "reverse_sort", "Reverse sort", show=False),
        Binding("escape", "clear_filter", "Clear filter", show=False),
    ]

    def __init__(self) -> None:
        super().__init__(id="runs")
        self.runs: list[RunInfo] = []
        self.terms: list[str] = []
        self.sort = "newest"
        self.reverse = False

    def compose(self) -> ComposeResult:
        yield NavBar("runs")
        yield DaemonBanner()
        self.terms = self.tui.run_filter.split()
        box = Input(
            self.tui.run_filter,
            placeholder="filter: words, project:NAME kind:KIND state:STATE",
            id="filter",
        )
        if self.terms:
            box.add_class("-active")  # shown, so that the user sees why runs are missing
        yield box
        yield RunTable(id="run-table")
        yield Static(id="run-note")
        yield Static(id="runs-status")
        yield Footer()

    @property
    def table(self) -> RunTable:
        return self.query_one(RunTable)

    async def fetch(self) -> list[RunInfo]:
        return await self.client.runs(limit=RUN_LIMIT)

    def apply(self, data: list[RunInfo]) -> None:
        self.runs = data
        self.show()

    def show(self) -> None:
        """Filter and sort what was fetched last into the table (no request)."""
        listed = [r for r in self.runs if matches(r, self.terms)]
        listed.sort(key=sort_key(self.sort), reverse=self.reverse)
        self.table.show(listed)
        total = len(self.runs)
        more = f" (the newest {RUN_LIMIT})" if total >= RUN_LIMIT else ""
        shown = f"{len(listed)} of {total} runs{more}" if self.terms else f"{total} runs{more}"
        order = f"sorted by {self.sort}{' (reversed)' if self.reverse else ''}"
        where = f" · filter: {' '.join(self.terms)}" if self.terms else ""
        self.query_one("#runs-status", Static).update(f"{shown} · {order}{where}")
        self._note()

    def selected(self) -> RunInfo | None:
        run_id = self.table.selected_id()
        return next((r for r in self.runs if r.id == run_id), None)

    def _note(self) -> None:
        run = self.selected()
        parts = []
        if run is not None:
            text = "done" if run.state == RunState.SUCCEEDED else run.error or run.reason or ""
            if text:
                parts.append(text.splitlines()[0])
            if run.best_validation is not None:
                parts.append(f"best {fmt.validation(run.best_validation)}")
            url = self.tui.viewers.url(run.id)
            if url is not None:
                parts.append(f"viewer {url}")
        self.query_one("#run-note", Static).update(" · ".join(parts))

    @on(RunHighlighted)
    def _highlighted(self) -> None:
        self._note()

    @on(ColumnClicked)
    def _column_clicked(self, event: ColumnClicked) -> None:
        sort = {"id": "newest", "eta": "progress", "gpus": "newest"}.get(event.column, event.column)
        if sort not in SORTS:
            return
        self.reverse = not self.reverse if sort == self.sort else False
        self.sort = sort
        self.show()

    # ---- actions --------------------------------------------------------------------------
    def action_open(self) -> None:
        run = self.selected()
        if run is not None:
            self.post_message(RunSelected(run.id))

    def action_logs(self) -> None:
        run = self.selected()
        if run is not None:
            self.post_message(RunSelected(run.id, tab="log"))

    def action_filter(self) -> None:
        box = self.query_one("#filter", Input)
        box.add_class("-active")
        box.focus()

    @on(Input.Changed, "#filter")
    def _filter_changed(self, event: Input.Changed) -> None:
        self.terms = event.value.split()
        self.show()

    @on(Input.Submitted, "#filter")
    def _filter_done(self) -> None:
        if not self.terms:
            self.query_one("#filter", Input).remove_class("-active")
        self.table.focus()

    def action_clear_filter(self) -> None:
        box = self.query_one("#filter", Input)
        box.value = ""
        box.remove_class("-active")
        self.terms = []
        self.table.focus()
        self.show()

    def action_cycle_sort(self) -> None:
        self.sort = SORTS[(SORTS.index(self.sort) + 1) % len(SORTS)]
        self.show()

    def action_reverse_sort(self) -> None:
        self.reverse = not self.reverse
        self.show()

    def action_cancel_run(self) -> None:
        run = self.selected()
        if run is not None:
            self.cancel_run(run)

    def action_resume_run(self) -> None:
        run = self.selected()
        if run is not None:
            self.resume_run(run)

    def action_view_run(self) -> None:
        run = self.selected()
        if run is not None:
            self.view_run(run)

    def viewer_started(self, run_id: str, url: str) -> None:
        self._note()

    def action_new_run(self) -> None:
        def submitted(run: RunInfo | None) -> None:
            if run is not None:
                self.notify(f"submitted {run.id}", timeout=4)
                self.refresh_data()

        self.app.push_screen(NewRunDialog(self.tui.projects_root), submitted)
