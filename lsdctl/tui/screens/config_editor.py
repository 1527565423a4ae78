"""The config editor: a project's config as a form, section by section, each field with
its documentation; validated (as a whole) on every change; saved atomically to
project.toml after a look at the diff against the preset, and never while invalid."""

from __future__ import annotations

import asyncio
from typing import Any, ClassVar

from pydantic import BaseModel, ValidationError
from textual import events, on, work
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Vertical
from textual.markup import escape
from textual.suggester import SuggestFromList
from textual.widgets import Footer, Input, Static

from engine.project import config as cfg
from engine.project.layout import Project
from lsdctl.tui.messages import FieldChosen, FieldHighlighted
from lsdctl.tui.screens.base import TuiScreen
from lsdctl.tui.screens.dialogs import ConfirmDialog, SaveConfigDialog
from lsdctl.tui.widgets import DaemonBanner, NavBar
from lsdctl.tui.widgets.config_form import ConfigForm, FieldSpec, as_text

_DERIVED = "model.output_shape"
_READ_ONLY = {
    _DERIVED: "computed from the input shape",
    "preset": "read only: `lsdctl init NAME --preset P --force` starts over from another",
}


def sections(model: BaseModel, prefix: str = "") -> list[tuple[str, str, list[FieldSpec]]]:
    """(section key, its doc, its leaf fields) in declaration order, nested sections after."""
    fields = type(model).model_fields
    leaves = [
        FieldSpec.of(prefix + name, info)
        for name, info in fields.items()
        if not isinstance(getattr(model, name), BaseModel)
    ]
    doc = (type(model).__doc__ or "").strip().splitlines()[0] if type(model).__doc__ else ""
    found = [(prefix.rstrip(".") or "project", doc, leaves)] if leaves else []
    for name in fields:
        value = getattr(model, name)
        if isinstance(value, BaseModel):
            found += sections(value, f"{prefix}{name}.")
    return found


def parse(spec: FieldSpec, value: str) -> Any:
    """An editor's text as the value it stands for (TOML syntax, strings as typed)."""
    if spec.editor == "choice":
        typed = value.strip().lower()
        return next((c for c in spec.choices if as_text(c).lower() == typed), value)
    if spec.text_only:
        return value
    if spec.nullable and not value.strip():
        return None
    return cfg.parse_value(value.strip())


def nested(values: dict[str, Any]) -> dict[str, Any]:
    data: dict[str, Any] = {}
    for key, value in values.items():
        node = data
        *parents, leaf = key.split(".")
        for part in parents:
            node = node.setdefault(part, {})
        node[leaf] = value
    return data


def blame(errors: list[tuple[str, str]], keys: list[str]) -> tuple[dict[str, str], list[str]]:
    """Each error beside the field it is about: its location, or else the first key its
    message names (cross-field rules); the others stay general."""
    by_length = sorted(keys, key=len, reverse=True)
    placed: dict[str, str] = {}
    general: list[str] = []
    for where, message in errors:
        key = where if where in keys else next((k for k in by_length if k in message), None)
        if key is None:
            general.append(f"{where}: {message}" if where else message)
        else:
            placed.setdefault(key, message)
    return placed, general


def validation_errors(exc: ValidationError) -> list[tuple[str, str]]:
    found = []
    for error in exc.errors():
        where = ".".join(str(p) for p in error["loc"] if not isinstance(p, int))
        message = str(error["msg"]).removeprefix("Value error, ")
        if error["type"] == "extra_forbidden":
            message = "unknown key"
        found.append((where, message))
    return found


def diff(saved: cfg.ProjectConfig, draft: cfg.ProjectConfig) -> str:
    """Every key that differs from the preset, `*` where this edit changed it."""
    preset = dict((k, v) for k, v, _ in cfg.iter_keys(cfg.from_preset(draft.preset)))
    before = dict((k, v) for k, v, _ in cfg.iter_keys(saved))
    lines = []
    for key, value, _ in cfg.iter_keys(draft):
        if key in ("preset", _DERIVED):
            continue
        edited = before.get(key) != value
        if preset.get(key) != value or edited:
            mark = "[b $accent]*[/]" if edited else " "
            was = f" (was {escape(as_text(before.get(key)))})" if edited else ""
            lines.append(
                f"{mark} {key}: {escape(as_text(preset.get(key)))} → "
                f"[b]{escape(as_text(value))}[/]{was}"
            )
    head = f"against preset {escape(draft.preset)} (* = changed by this edit):"
    return "\n".join([head, *lines]) if lines else f"same as preset {escape(draft.preset)}"


class ConfigEditorScreen(TuiScreen):
    CSS_PATH = "config_editor.tcss"
    AUTO_FOCUS = "#form"
    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("enter", "edit", "Edit field"),
        Binding("ctrl+s", "save", "Save", priority=True),
        Binding("escape", "back", "Back"),
        Binding("ctrl+r", "revert", "Revert"),
    ]

    def __init__(self, project: Project) -> None:
        super().__init__()
        self.project = project
        self.saved = project.load_config()
        self.draft: cfg.ProjectConfig | None = self.saved
        self.sections = sections(self.saved)
        self.specs = {spec.key: spec for _, _, leaves in self.sections for spec in leaves}
        self.values: dict[str, Any] = {key: cfg.get_value(self.saved, key) for key in self.specs}
        self.texts = {key: as_text(value) for key, value in self.values.items()}
        self.errors: dict[str, str] = {}
        self.general: list[str] = []
        self._shown_status = ""

    def compose(self) -> ComposeResult:
        yield NavBar("projects", title=f"config of {self.project.name}")
        yield DaemonBanner()
        yield Static(id="editor-status")
        yield ConfigForm(self.sections, self.texts, id="form")
        with Vertical(id="edit-panel"):
            yield Static(id="edit-key")
            yield Input(id="edit", compact=True)
            yield Static(id="edit-doc")
        yield Footer()

    @property
    def form(self) -> ConfigForm:
        return self.query_one(ConfigForm)

    @property
    def editor(self) -> Input:
        return self.query_one("#edit", Input)

    def on_mount(self) -> None:
        self._load_editor(self.form.key)
        self._status()

    @property
    def changed(self) -> bool:
        return self.draft is None or self.draft != self.saved

    # ---- the edit line ----------------------------------------------------------------
    @on(FieldHighlighted)
    def _highlighted(self, event: FieldHighlighted) -> None:
        self._load_editor(event.key)

    def _load_editor(self, key: str) -> None:
        spec = self.specs[key]
        editor = self.editor
        with editor.prevent(Input.Changed):  # loading is not editing
            editor.value = self.texts[key]
        editor.disabled = spec.editor == "fixed"
        choices = [as_text(c) for c in spec.choices]
        editor.suggester = SuggestFromList(choices, case_sensitive=False) if choices else None
        self.query_one("#edit-key", Static).update(
            f"[b]{escape(key)}[/b]"
            + (f"  ({_READ_ONLY.get(key, 'read only')})" if spec.editor == "fixed" else "")
        )
        self._show_doc(key)

    def _show_doc(self, key: str) -> None:
        error = self.errors.get(key)
        text = f"[$error]✗ {escape(error)}[/]" if error else escape(self.specs[key].doc)
        self.query_one("#edit-doc", Static).update(text)

    @on(FieldChosen)
    def action_edit(self) -> None:
        if not self.editor.disabled:
            self.editor.focus()

    def on_key(self, event: events.Key) -> None:
        # Typing on the form starts editing the highlighted field.
        if self.form.has_focus and event.is_printable and not self.editor.disabled:
            self.editor.focus()
            self.editor.value = ""
            self.editor.insert_text_at_cursor(event.character or "")
            event.stop()
            event.prevent_default()

    @on(Input.Submitted, "#edit")
    def _submitted(self) -> None:
        self.form.focus()
        self.form.action_move(1)

    @on(Input.Changed, "#edit")
    def _edited(self, event: Input.Changed) -> None:
        key = self.form.key
        spec = self.specs[key]
        if spec.editor == "fixed" or event.value == self.texts[key]:
            return
        self.texts[key] = event.value
        self.values[key] = parse(spec, event.value)
        self.validate()

    # ---- validation -------------------------------------------------------------------
    def validate(self) -> None:
        placed: dict[str, str]
        data = nested({k: v for k, v in self.values.items() if k != _DERIVED})
        try:
            self.draft = cfg.ProjectConfig.model_validate(data)
            placed, self.general = {}, []
        except ValidationError as exc:
            self.draft = None
            placed, self.general = blame(validation_errors(exc), list(self.specs))
        self.errors = placed
        if self.draft is not None:
            self.texts[_DERIVED] = as_text(self.draft.model.output_shape)
        saved = {k: as_text(v) for k, v, _ in cfg.iter_keys(self.saved)}
        changed = {k for k in self.specs if k != _DERIVED and saved.get(k) != _normal(self, k)}
        self.form.show(self.texts, self.errors, changed)
        self._show_doc(self.form.key)
        self._status()

    def _status(self) -> None:
        if self.draft is None:
            count = len(self.errors) + len(self.general)
            general = f": {escape('; '.join(self.general))}" if self.general else ""
            text = f"[$error]✗ {count} invalid value(s): not saved{general}[/]"
        elif self.changed:
            text = "[$warning]● unsaved changes[/]: ctrl+s shows the diff and saves"
        else:
            text = f"[$success]✓ valid[/], same as {escape(str(self.project.config_path.name))}"
        status = (
            f"{escape(self.project.name)} · {text} · enter (or typing) edits the highlighted "
            "field · escape goes back"
        )
        if status != self._shown_status:
            self._shown_status = status
            self.query_one("#editor-status", Static).update(status)

    # ---- actions ----------------------------------------------------------------------
    def action_save(self) -> None:
        draft = self.draft
        if draft is None:
            self.notify("invalid values: nothing saved (fix the fields marked ✗)", severity="error")
            first = next(iter(self.errors), None)
            if first is not None:
                self.form.select(first)
            return
        if not self.changed:
            self.notify("no changes to save", timeout=3)
            return

        def answered(yes: bool | None) -> None:
            if yes:
                self._save(draft)

        self.app.push_screen(
            SaveConfigDialog(f"Save {self.project.config_path}?", diff(self.saved, draft)),
            answered,
        )

    @work(exclusive=True, group="save")
    async def _save(self, draft: cfg.ProjectConfig) -> None:
        await asyncio.to_thread(self.project.save_config, draft)
        self.saved = draft
        self.validate()
        self.notify(f"saved {self.project.config_path}", timeout=4)

    def action_back(self) -> None:
        if self.editor.has_focus:
            self.form.focus()
            return
        if not self.changed:
            self.app.pop_screen()
            return

        def answered(yes: bool | None) -> None:
            if yes:
                self.app.pop_screen()

        self.app.push_screen(ConfirmDialog("Discard the unsaved changes?"), answered)

    def action_revert(self) -> None:
        self.app.switch_screen(ConfigEditorScreen(self.project))


def _normal(screen: ConfigEditorScreen, key: str) -> str:
    """The value of `key` as the saved file would show it (so `8` and `8.0` compare)."""
    return as_text(_plain(screen.values[key]))


def _plain(value: Any) -> Any:
    if isinstance(value, tuple | list):
        return [_plain(v) for v in value]
    return getattr(value, "value", value)
