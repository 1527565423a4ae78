"""The config editor's form: every key of the project's config on one line, grouped by
section, with its value and its documentation (or, when the value is invalid, the error),
drawn line by line (Textual's line API) so the seventy-odd keys cost one widget.

Choices (booleans, enumerations) are typed like the rest, completed from their options."""

from __future__ import annotations

import json
from dataclasses import dataclass
from enum import Enum
from typing import Any, ClassVar, Literal, get_args, get_origin

from pydantic.fields import FieldInfo
from rich.segment import Segment
from textual import events
from textual.binding import Binding, BindingType
from textual.geometry import Size
from textual.reactive import reactive
from textual.scroll_view import ScrollView
from textual.strip import Strip

from lsdctl.tui.messages import FieldChosen, FieldHighlighted


@dataclass(frozen=True)
class FieldSpec:
    """What the editor needs to know of one leaf of ProjectConfig."""

    key: str
    description: str
    editor: Literal["choice", "text", "fixed"]
    choices: tuple[Any, ...] = ()  # the values themselves (shown as text)
    nullable: bool = False
    text_only: bool = False  # a plain string: never parsed as TOML

    @property
    def doc(self) -> str:
        if self.editor != "choice":
            return self.description
        return f"{self.description} One of: {', '.join(as_text(c) for c in self.choices)}."

    @classmethod
    def of(cls, key: str, field: FieldInfo) -> FieldSpec:
        annotation = field.annotation
        args = get_args(annotation)
        nullable = type(None) in args
        inner = [a for a in args if a is not type(None)] if nullable else [annotation]
        base: Any = inner[0] if len(inner) == 1 else None
        extra = field.json_schema_extra
        description = field.description or ""
        if key == "preset" or (isinstance(extra, dict) and extra.get("derived")):
            return cls(key, description, "fixed", nullable=nullable)
        if base is bool:
            return cls(key, description, "choice", (True, False))
        if get_origin(base) is Literal:
            return cls(key, description, "choice", get_args(base))
        if isinstance(base, type) and issubclass(base, Enum):
            return cls(key, description, "choice", tuple(m.value for m in base))
        return cls(key, description, "text", nullable=nullable, text_only=base is str)


def as_text(value: Any) -> str:
    """A value as the editor shows it: TOML-like, lists as [a, b], unset as empty."""
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, Enum):
        return str(value.value)
    if isinstance(value, list | tuple):
        return json.dumps([_plain(v) for v in value])
    return str(value)


def _plain(value: Any) -> Any:
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    return value.value if isinstance(value, Enum) else value


_NAME, _VALUE = 26, 32


def _fit(text: str, width: int) -> str:
    text = text.replace("\n", " ")
    return text[: width - 1] + "…" if len(text) > width else text.ljust(width)


class ConfigForm(ScrollView, can_focus=True):
    """Section lines and field lines; the cursor moves over the fields. The screen edits
    the highlighted field (enter, or just typing) and tells the form what to show."""

    DEFAULT_CSS = """
    ConfigForm {
        height: 1fr;
        background: $surface;
    }
    ConfigForm > .config-form--section { background: $panel; text-style: bold; }
    ConfigForm > .config-form--section-doc { background: $panel; color: $text-muted; }
    ConfigForm > .config-form--value { color: $text; }
    ConfigForm > .config-form--fixed { color: $text-muted; text-style: italic; }
    ConfigForm > .config-form--doc { color: $text-muted; }
    ConfigForm > .config-form--error { color: $error; text-style: bold; }
    ConfigForm > .config-form--changed { color: $accent; text-style: bold; }
    ConfigForm > .config-form--cursor { background: $accent 30%; }
    ConfigForm:focus > .config-form--cursor { background: $accent 55%; }
    """
    COMPONENT_CLASSES: ClassVar[set[str]] = {
        "config-form--section",
        "config-form--section-doc",
        "config-form--value",
        "config-form--fixed",
        "config-form--doc",
        "config-form--error",
        "config-form--changed",
        "config-form--cursor",
    }
    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("up,k", "move(-1)", "Up", show=False),
        Binding("down,j", "move(1)", "Down", show=False),
        Binding("pageup", "move(-10)", "Page up", show=False),
        Binding("pagedown", "move(10)", "Page down", show=False),
        Binding("home", "move(-1000)", "First", show=False),
        Binding("end", "move(1000)", "Last", show=False),
        Binding("enter", "choose", "Edit", show=False),
    ]

    cursor: reactive[int] = reactive(0)

    def __init__(
        self,
        sections: list[tuple[str, str, list[FieldSpec]]],
        texts: dict[str, str],
        *,
        id: str | None = None,
    ) -> None:
        super().__init__(id=id)
        self.lines: list[tuple[str, str, str]] = []  # ("section", key, doc) | ("field", key, "")
        self.specs: dict[str, FieldSpec] = {}
        for key, doc, fields in sections:
            self.lines.append(("section", key, doc))
            for spec in fields:
                self.lines.append(("field", spec.key, ""))
                self.specs[spec.key] = spec
        self.texts = dict(texts)
        self.errors: dict[str, str] = {}
        self.changed: set[str] = set()
        self.virtual_size = Size(_NAME + _VALUE + 40, len(self.lines))
        self.set_reactive(ConfigForm.cursor, self._field_at(0, 1))

    # ---- what the screen tells it -----------------------------------------------------
    def show(self, texts: dict[str, str], errors: dict[str, str], changed: set[str]) -> None:
        if (texts, errors, changed) != (self.texts, self.errors, self.changed):
            self.texts, self.errors, self.changed = dict(texts), dict(errors), set(changed)
            self.refresh()

    @property
    def key(self) -> str:
        return self.lines[self.cursor][1]

    def select(self, key: str) -> None:
        self.cursor = next(
            i for i, (kind, k, _) in enumerate(self.lines) if kind == "field" and k == key
        )

    def line_text(self, key: str) -> str:
        """The line of `key` as it reads on screen (for tests and screen readers)."""
        index = next(i for i, (kind, k, _) in enumerate(self.lines) if k == key)
        return "".join(segment.text for segment in self._line(index, 200))

    # ---- cursor -------------------------------------------------------------------------
    def _field_at(self, index: int, direction: int) -> int:
        index = min(max(index, 0), len(self.lines) - 1)
        step = 1 if direction >= 0 else -1
        while 0 <= index < len(self.lines) and self.lines[index][0] != "field":
            index += step
        if not 0 <= index < len(self.lines):
            return self._field_at(index - step, -step)
        return index

    def action_move(self, delta: int) -> None:
        self.cursor = self._field_at(self.cursor + delta, delta)

    def action_choose(self) -> None:
        self.post_message(FieldChosen(self.key))

    def watch_cursor(self, old: int, new: int) -> None:
        # Keep the cursor and the section line above it in view.
        top, height = round(self.scroll_y), max(self.scrollable_content_region.height, 1)
        if new - 1 < top:
            self.scroll_to(y=max(new - 1, 0), animate=False, immediate=True)
        elif new >= top + height:
            self.scroll_to(y=new - height + 1, animate=False, immediate=True)
        self.refresh()
        self.post_message(FieldHighlighted(self.key))

    def on_click(self, event: events.Click) -> None:
        offset = event.get_content_offset(self)
        if offset is None:
            return
        index = round(self.scroll_y) + offset.y
        if 0 <= index < len(self.lines) and self.lines[index][0] == "field":
            if index == self.cursor:
                self.action_choose()
            else:
                self.cursor = index

    # ---- drawing ------------------------------------------------------------------------
    def render_line(self, y: int) -> Strip:
        width = self.scrollable_content_region.width
        index = round(self.scroll_y) + y
        if index >= len(self.lines):
            return Strip.blank(width, self.rich_style)
        base = self.rich_style
        if index == self.cursor:
            base += self.get_component_rich_style("config-form--cursor")
        return Strip(self._line(index, width)).adjust_cell_length(width, base)

    def _line(self, index: int, width: int) -> list[Segment]:
        kind, key, doc = self.lines[index]
        style = self.get_component_rich_style
        base = self.rich_style
        if index == self.cursor:
            base += style("config-form--cursor")
        if kind == "section":
            head = f" [{key}] "
            return [
                Segment(head, base + style("config-form--section")),
                Segment(
                    _fit(doc, max(width - len(head), 1)), base + style("config-form--section-doc")
                ),
            ]
        spec = self.specs[key]
        error = self.errors.get(key)
        # Partial styles: colours over the line's background (the cursor's, say).
        name_style = (
            base + style("config-form--changed", partial=True) if key in self.changed else base
        )
        value_style = base + style(
            "config-form--fixed" if spec.editor == "fixed" else "config-form--value", partial=True
        )
        note = f"✗ {error}" if error else spec.doc
        note_style = base + style(
            "config-form--error" if error else "config-form--doc", partial=True
        )
        rest = max(width - _NAME - _VALUE, 1)
        return [
            Segment("  " + _fit(key.rsplit(".", 1)[-1], _NAME - 2), name_style),
            Segment(_fit(self.texts.get(key, ""), _VALUE - 1) + " ", value_style),
            Segment(_fit(note, rest), note_style),
        ]
