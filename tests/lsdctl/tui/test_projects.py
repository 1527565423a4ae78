"""Projects (volumes and data check results, a new project from a preset) and the
config editor (documented fields, validation as you type, errors beside the field,
the diff against the preset, atomic saving, nothing saved while invalid)."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from textual.widgets import DataTable, Input, Select, Static

from engine.data.synth import synthesize
from engine.data.volume import write_volume
from engine.project import config as cfg
from engine.project.layout import Project
from lsdctl.tui.screens import ConfigEditorScreen, ProjectsScreen
from lsdctl.tui.screens.dialogs import ConfirmDialog, NewProjectDialog, SaveConfigDialog
from tests.lsdctl.tui.conftest import SIZE, app_for, screen_text, showing, until
from tests.lsdctl.tui.seed import Seeded

pytestmark = pytest.mark.anyio


@pytest.fixture
def root(tmp_path: Path, template_project: Path) -> Path:
    shutil.copytree(template_project, tmp_path / "projects" / "p")
    return tmp_path / "projects"


def _rows(table: DataTable[object], columns: int) -> list[list[str]]:
    return [[str(c) for c in table.get_row_at(i)[:columns]] for i in range(table.row_count)]


async def _projects(app: object, pilot: object) -> ProjectsScreen:
    await pilot.press("3")  # type: ignore[attr-defined]
    screen = app.screen  # type: ignore[attr-defined]
    assert isinstance(screen, ProjectsScreen)
    await until(pilot, lambda: screen.loaded)  # type: ignore[arg-type]
    return screen


async def test_projects_show_volumes_with_data_check_results_and_n_creates_one(
    seeded: Seeded, root: Path
) -> None:
    raw, labels = synthesize((24, 32, 32), (8, 8, 8), seed=2)
    write_volume(root / "p" / "val" / "v2.zarr", raw, labels, (8, 8, 8))
    app = app_for(seeded.daemon, projects=root)
    async with app.run_test(size=SIZE) as pilot:
        screen = await _projects(app, pilot)
        assert list(screen.summaries) == ["p"]
        await until(pilot, lambda: "p" in screen.reports)
        await pilot.pause()
        text = screen_text(app)
        assert "preset tiny · 3D · voxel [8, 8, 8] nm · MTLSD" in text
        assert "synth0" in text and "48x48x48" in text
        assert "every volume passes the data check" in text
        # val beside train and test: a count per split, and its volumes in the list.
        projects = screen.query_one("#project-table", DataTable)
        assert [str(c.label) for c in projects.columns.values()] == [
            *("PROJECT", "PRESET", "TRAIN", "VAL", "TEST", "RUNS"),
        ]
        assert _rows(projects, 6) == [["p", "tiny", "1", "1", "0", "0"]]
        assert _rows(screen.query_one("#volume-table", DataTable), 3) == [
            ["train", "synth0", "48x48x48"],
            ["val", "v2", "24x32x32"],
        ]

        # A broken volume: the check names the problem.
        shutil.rmtree(root / "p" / "train" / "synth0.zarr" / "labels")
        await pilot.press("d")
        await until(pilot, lambda: "p" in screen.reports)
        await pilot.pause()
        await showing(pilot, app, "error(s)")
        assert "no labels" in str(screen.query_one("#problems", Static).render())

        await pilot.press("n")
        form = app.screen
        assert isinstance(form, NewProjectDialog)
        await pilot.press(*"bad/name", "enter")
        note = form.query_one("#form-error", Static)
        await until(pilot, lambda: note.has_class("-shown"))
        assert "invalid project name" in str(note.render())
        form.query_one("#name", Input).value = "brain2"
        form.query_one("#preset", Select).value = "cremi"
        await pilot.press("ctrl+s")
        await until(pilot, lambda: app.screen is screen and "brain2" in screen.summaries)
        assert Project(root / "brain2").load_config().preset == "cremi"
        assert screen.selected is not None and screen.selected.project.name == "brain2"
        # r reloads the list (a project made elsewhere shows up); enter edits one's config.
        # p3 is as old projects are: no val/ folder; it shows no val volumes.
        shutil.copytree(root / "p", root / "p3")
        shutil.rmtree(root / "p3" / "val")
        await pilot.press("r")
        await until(pilot, lambda: list(screen.summaries) == ["brain2", "p", "p3"])
        assert screen.summaries["p3"].volumes == {"train": 1, "val": 0, "test": 0}
        await pilot.press("enter")
        assert isinstance(app.screen, ConfigEditorScreen)
        assert app.screen.project.name == "brain2"
        await pilot.press("escape")
        assert app.screen is screen


async def test_the_config_editor_validates_as_you_type_and_saves_only_valid_configs(
    seeded: Seeded, root: Path
) -> None:
    project = Project(root / "p")
    original = project.config_path.read_text()
    app = app_for(seeded.daemon, projects=root)
    async with app.run_test(size=SIZE) as pilot:
        await _projects(app, pilot)
        await pilot.press("e")
        editor = app.screen
        assert isinstance(editor, ConfigEditorScreen)
        await pilot.pause()
        form = editor.form
        assert form.has_focus
        # Every field of the config is there, grouped by section, with its documentation.
        keys = [key for key, _, _ in cfg.iter_keys(project.load_config())]
        assert [key for kind, key, _ in form.lines if kind == "field"] == keys
        sections = [key for kind, key, _ in form.lines if kind == "section"]
        assert sections[:3] == ["project", "system", "data"]
        assert "train.augment" in sections and "model" in sections
        assert "Total training iterations." in form.line_text("train.iterations")
        assert "One of: MTLSD, LSD, AFF, ACLSD, ACRLSD." in form.line_text("train.model_type")

        # Typing an invalid value: the error beside the field; ctrl+s saves nothing.
        form.select("train.iterations")
        await pilot.pause()
        assert editor.editor.value == "6"
        await pilot.press("enter")
        assert editor.editor.has_focus
        await pilot.press("ctrl+u", "minus", "5")
        assert editor.draft is None
        assert "✗ Input should be greater than 0" in form.line_text("train.iterations")
        await showing(pilot, app, "✗ 1 invalid value(s): not saved")
        await pilot.press("ctrl+s")
        assert app.screen is editor
        assert project.config_path.read_text() == original
        await pilot.press("ctrl+u", *"1234", "enter")  # enter: back to the form, one down
        assert editor.draft is not None and not editor.errors
        assert form.has_focus and form.key == "train.batch_size"
        assert "Total training iterations." in form.line_text("train.iterations")

        # A rule across fields: an input shape the UNet cannot take, named with the field.
        form.select("model.input_shape")
        await pilot.press("enter")
        editor.editor.value = "[21, 20, 20]"
        await pilot.pause()
        assert "does not fit the UNet" in editor.errors["model.input_shape"]
        assert "✗ model.input_shape [21, 20, 20] does not fit" in form.line_text(
            "model.input_shape"
        )
        editor.editor.value = "[44, 44, 44]"
        await pilot.pause()
        assert editor.draft is not None
        # The computed output shape follows; it cannot be edited.
        assert form.texts["model.output_shape"] == "[28, 28, 28]"
        await pilot.press("escape")  # leaves the edit line, not the screen
        assert form.has_focus
        form.select("model.output_shape")
        await pilot.press("enter")
        assert editor.editor.disabled and form.has_focus
        # A choice is typed and completed; typing on the form starts editing.
        form.select("train.augment.elastic")
        await pilot.press("f", "right")
        assert editor.editor.value == "false"
        assert editor.draft is not None and editor.draft.train.augment.elastic is False
        await pilot.press("escape")

        # Saving shows the diff against the preset first; n keeps the file as it was.
        await pilot.press("ctrl+s")
        assert isinstance(app.screen, SaveConfigDialog)
        await showing(pilot, app, "train.iterations", "1234", "(was 6)", "model.input_shape")
        await showing(pilot, app, "train.augment.elastic")
        await pilot.press("n")
        assert project.config_path.read_text() == original
        await pilot.press("ctrl+s", "y")
        await until(pilot, lambda: editor.saved.train.iterations == 1234)
        saved = project.load_config()
        assert saved.train.iterations == 1234
        assert saved.model.input_shape == [44, 44, 44]
        assert saved.train.augment.elastic is False
        assert saved == editor.draft
        # Written atomically: no temporary file left beside it, comments kept.
        assert sorted(p.name for p in root.joinpath("p").iterdir() if p.is_file()) == [
            "project.toml"
        ]
        assert "# Total training iterations." in project.config_path.read_text()
        assert not editor.changed

        # ctrl+r drops the changes made since the last save.
        form.select("train.iterations")
        await pilot.press(*"99", "escape")
        assert editor.changed
        await pilot.press("ctrl+r")
        reverted = app.screen
        assert isinstance(reverted, ConfigEditorScreen) and reverted is not editor
        assert not reverted.changed and reverted.texts["train.iterations"] == "1234"
        editor, form = reverted, reverted.form
        await pilot.pause()

        # Leaving with unsaved changes asks first.
        form.select("train.iterations")
        await pilot.press(*"77", "escape")
        await pilot.press("escape")
        assert isinstance(app.screen, ConfirmDialog)
        await pilot.press("n")
        assert app.screen is editor
        await pilot.press("escape", "y")
        assert isinstance(app.screen, ProjectsScreen)
    assert project.load_config().train.iterations == 1234
