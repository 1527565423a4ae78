"""`lsdctl tui`: the Textual dashboard of runs, losses, blocks, logs, GPUs and projects."""

from __future__ import annotations

from lsdctl.tui.app import LsdctlApp, create_app

__all__ = ["LsdctlApp", "create_app"]
