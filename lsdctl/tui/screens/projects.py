"""Projects: each with its preset and volumes, the results of `data check` per volume,
a new project from a preset, and the way into the config editor."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from typing import TYPE_CHECKING, ClassVar

from textual import on, work
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Horizontal, Vertical, VerticalScroll
from textual.markup import escape
from textual.widgets import DataTable, Footer, Static

from engine.errors import InputError
from engine.project import config as cfg
from engine.project.layout import SPLITS, Project, list_projects
from lsdctl.tui.screens.base import TuiScreen
from lsdctl.tui.screens.config_editor import ConfigEditorScreen
from lsdctl.tui.screens.dialogs import NewProjectDialog
from lsdctl.tui.widgets import DaemonBanner, NavBar

if TYPE_CHECKING:
    from engine.data.check import VolumeReport


@dataclass
class ProjectSummary:
    project: Project
    config: cfg.ProjectConfig | None
    error: str | None
    volumes: dict[str, int]
    runs: int


def summarize(project: Project) -> ProjectSummary:
    try:
        config, error = project.load_config(), None
    except InputError as exc:
        config, error = None, str(exc)
    volumes = {split: len(project.volumes(split)) for split in SPLITS}
    runs = (
        sum(1 for p in project.runs_dir.iterdir() if p.is_dir()) if project.runs_dir.is_dir() else 0
    )
    return ProjectSummary(project, config, error, volumes, runs)


def check(project: Project) -> list[VolumeReport]:
    # Imported here: it brings numpy and zarr, which only a data check needs.
    from engine.data.check import check_project

    return check_project(project)


class ProjectsScreen(TuiScreen):
    CSS_PATH = "projects.tcss"
    AUTO_FOCUS = "#project-table"
    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("e", "edit", "Edit config"),
        Binding("n", "new_project", "New project"),
        Binding("d", "data_check", "Data check"),
        Binding("r", "reload", "Reload"),
    ]

    def __init__(self) -> None:
        super().__init__(id="projects")
        self.summaries: dict[str, ProjectSummary] = {}
        self.reports: dict[str, list[VolumeReport] | str] = {}
        self.loaded = False
        self._select_next: str | None = None  # a project just created

    def compose(self) -> ComposeResult:
        yield NavBar("projects")
        yield DaemonBanner()
        with Horizontal():
            with Vertical(id="project-list"):
                yield DataTable(id="project-table", cursor_type="row")
            with Vertical(id="project-detail"):
                yield Static(id="project-info")
                yield DataTable(id="volume-table", cursor_type="row")
                with VerticalScroll(id="problems-box"):
                    yield Static(id="problems")
        yield Footer()

    def on_mount(self) -> None:
        projects = self.query_one("#project-table", DataTable)
        for label, width in (
            ("PROJECT", 14),
            ("PRESET", 8),
            # One count per split, in the order the rows give them (TRAIN, VAL, TEST).
            *((split.upper(), len(split)) for split in SPLITS),
            ("RUNS", 4),
        ):
            projects.add_column(label, key=label.lower(), width=width)
        volumes = self.query_one("#volume-table", DataTable)
        for label, width in (
            ("SPLIT", 5),
            ("VOLUME", 12),
            ("SHAPE", 12),
            ("VOXEL nm", 8),
            ("LABELS", 6),
            ("CHECK", 12),
        ):
            volumes.add_column(label, key=label.lower(), width=width)

    def on_screen_resume(self) -> None:
        self.reload()

    @property
    def selected(self) -> ProjectSummary | None:
        table = self.query_one("#project-table", DataTable)
        if table.row_count == 0:
            return None
        key = table.coordinate_to_cell_key(table.cursor_coordinate).row_key.value
        return self.summaries.get(str(key))

    @work(exclusive=True, group="projects")
    async def reload(self) -> None:
        root = self.tui.projects_root
        summaries = await asyncio.to_thread(
            lambda: {p.name: summarize(p) for p in list_projects(root)}
        )
        current = self.selected
        self.summaries = summaries
        table = self.query_one("#project-table", DataTable)
        table.clear()
        for name, summary in summaries.items():
            table.add_row(
                name,
                summary.config.preset if summary.config else "invalid",
                *(str(summary.volumes[split]) for split in SPLITS),
                str(summary.runs),
                key=name,
            )
        if not summaries:
            self.query_one("#project-info", Static).update(
                f"no projects in {escape(str(root))}: press n to create one"
            )
        wanted = self._select_next or (current.project.name if current else None)
        self._select_next = None
        if wanted in summaries:
            table.move_cursor(row=table.get_row_index(wanted))
        self._show_selected()
        self.loaded = True

    @on(DataTable.RowHighlighted, "#project-table")
    def _highlighted(self) -> None:
        self._show_selected()

    @on(DataTable.RowSelected, "#project-table")
    def _chosen(self) -> None:
        self.action_edit()

    def _show_selected(self) -> None:
        summary = self.selected
        if summary is None:
            return
        config = summary.config
        if config is None:
            info = (
                f"[b]{escape(summary.project.name)}[/b]\n[$error]{escape(summary.error or '')}[/]"
            )
        else:
            info = (
                f"[b]{escape(summary.project.name)}[/b] · preset {escape(config.preset)} · "
                f"{config.data.dims}D · voxel {config.data.voxel_size} nm · "
                f"{config.train.model_type.value}\n"
                f"input {config.model.input_shape} → output {config.model.output_shape} · "
                f"{config.train.iterations} iterations · e edits the config, d checks the data"
            )
        self.query_one("#project-info", Static).update(info)
        name = summary.project.name
        if name in self.reports:
            self._show_reports(name)
        else:
            self._show_volumes(summary)
            self.data_check(summary.project)

    def _show_volumes(self, summary: ProjectSummary) -> None:
        table = self.query_one("#volume-table", DataTable)
        table.clear()
        for split in SPLITS:
            for path in summary.project.volumes(split):
                table.add_row(split, path.stem, "", "", "", "checking…")
        self.query_one("#problems", Static).update("")

    def _show_reports(self, name: str) -> None:
        reports = self.reports[name]
        table = self.query_one("#volume-table", DataTable)
        table.clear()
        problems = self.query_one("#problems", Static)
        if isinstance(reports, str):
            problems.update(f"[$error]data check failed: {escape(reports)}[/]")
            return
        lines = []
        for report in reports:
            raw = report.arrays.get("raw")
            errors = sum(1 for p in report.problems if p.severity == "error")
            warnings = len(report.problems) - errors
            verdict = (
                "ok"
                if not report.problems
                else (f"{errors} error(s)" if errors else f"{warnings} warning(s)")
            )
            table.add_row(
                report.split,
                report.name,
                "x".join(map(str, raw.shape)) if raw else "-",
                ",".join(map(str, raw.voxel_size)) if raw else "-",
                "-" if report.label_count is None else str(report.label_count),
                verdict,
            )
            for problem in report.problems:
                colour = "$error" if problem.severity == "error" else "$warning"
                lines.append(
                    f"[{colour}]{problem.severity}[/] {escape(report.split)}/"
                    f"{escape(report.name)}: {escape(problem.message)}"
                )
        if not reports:
            lines.append("no volumes: `lsdctl data import FILE --project NAME` or `data synth`")
        problems.update("\n".join(lines) or "[$success]every volume passes the data check[/]")

    @work(group="check")
    async def data_check(self, project: Project) -> None:
        try:
            reports: list[VolumeReport] | str = await asyncio.to_thread(check, project)
        except Exception as exc:  # a damaged project is shown, not a crash of the TUI
            reports = str(exc)
        self.reports[project.name] = reports
        chosen = self.selected
        if chosen is not None and chosen.project.name == project.name:
            self._show_reports(project.name)

    # ---- actions --------------------------------------------------------------------------
    def action_edit(self) -> None:
        summary = self.selected
        if summary is None:
            return
        if summary.config is None:
            self.notify(summary.error or "invalid config", severity="error")
            return
        self.app.push_screen(ConfigEditorScreen(summary.project))

    def action_new_project(self) -> None:
        def created(name: str | None) -> None:
            if name:
                self.notify(f"created project {name}", timeout=4)
                self._select_next = name
                self.reload()

        self.app.push_screen(NewProjectDialog(self.tui.projects_root), created)

    def action_data_check(self) -> None:
        summary = self.selected
        if summary is not None:
            self.reports.pop(summary.project.name, None)
            self._show_volumes(summary)
            self.data_check(summary.project)

    def action_reload(self) -> None:
        self.reports.clear()
        self.reload()
