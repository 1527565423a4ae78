"""The top line of every screen: where you are, and the keys (or clicks) to go elsewhere."""

from __future__ import annotations

from textual.markup import escape
from textual.widgets import Static

SECTIONS = (("runs", "1", "Runs"), ("gpus", "2", "GPUs"), ("projects", "3", "Projects"))


class NavBar(Static):
    DEFAULT_CSS = """
    NavBar {
        dock: top;
        height: 1;
        background: $panel;
        color: $text-muted;
    }
    """

    def __init__(self, active: str, title: str = "") -> None:
        super().__init__()
        self.active = active
        self.title = title

    def on_mount(self) -> None:
        parts = ["[b]lsdctl[/b]"]
        for mode, key, label in SECTIONS:
            item = f"[@click=app.switch_mode('{mode}')]{key} {label}[/]"
            parts.append(f"[reverse b]{item}[/]" if mode == self.active else item)
        parts.append("[@click=app.help]? Help[/]")
        if self.title:
            parts.append(f"[b]{escape(self.title)}[/b]")
        self.update("  ".join(parts))
