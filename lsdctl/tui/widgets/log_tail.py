"""The tail of a run's log.txt, appended to as the daemon serves more of it."""

from __future__ import annotations

from textual.widgets import Log


class LogTail(Log):
    """A Log that follows the end unless the user scrolled up; keeps the last lines only."""

    DEFAULT_CSS = """
    LogTail {
        height: 1fr;
        border: round $panel;
        background: $surface;
    }
    """

    def __init__(self, max_lines: int = 5000, *, id: str | None = None) -> None:
        super().__init__(max_lines=max_lines, auto_scroll=True, id=id)
        self.offset_read = 0

    def append(self, text: str, next_offset: int) -> None:
        if text:
            self.write(text)
        self.offset_read = next_offset

    def reset(self) -> None:
        self.clear()
        self.offset_read = 0
