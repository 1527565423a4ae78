"""The banner a screen shows while the daemon does not answer; polling goes on meanwhile."""

from __future__ import annotations

from textual.widgets import Static


class DaemonBanner(Static):
    """Follows the app's `daemon_error`: hidden while it is None."""

    DEFAULT_CSS = """
    DaemonBanner {
        display: none;
        dock: top;
        height: auto;
        padding: 0 1;
        background: $error;
        color: $text;
        text-style: bold;
    }
    DaemonBanner.-down { display: block; }
    """

    def on_mount(self) -> None:
        self.watch(self.app, "daemon_error", self._follow, init=True)

    def _follow(self, error: str | None) -> None:
        self.set_class(error is not None, "-down")
        if error is not None:
            interval = getattr(self.app, "interval", 2.0)
            self.update(f"⚠ daemon unreachable — {error} — retrying every {interval:g} s")
