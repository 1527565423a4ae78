"""`python -m lsdctl.view PROJECT_DIR [RUN]`: the viewer for programs (the TUI starts it).

Prints the viewer's URL as its first line on stdout, then serves until SIGTERM or
SIGINT. Bad input: `error: …` on stderr, exit 2.
"""

from __future__ import annotations

import argparse
import os
import signal
import sys
import threading
from collections.abc import Sequence
from pathlib import Path
from types import FrameType

from engine.errors import InputError
from lsdctl.errors import LsdctlError


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m lsdctl.view")
    parser.add_argument("project_dir", type=Path)
    parser.add_argument("run", nargs="?")
    parser.add_argument("--port", type=int, default=0)
    args = parser.parse_args(argv)
    from lsdctl.view.plan import plan_view
    from lsdctl.view.viewer import serve_forever, start_viewer

    try:
        plan = plan_view(args.project_dir, args.run)
        session = start_viewer(plan, args.port)
    except (InputError, LsdctlError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    stop = threading.Event()

    def stopped(signum: int, frame: FrameType | None) -> None:
        stop.set()

    signal.signal(signal.SIGTERM, stopped)
    signal.signal(signal.SIGINT, stopped)
    print(session.url, flush=True)
    if not serve_forever(session, stop):
        sys.stdout.flush()
        os._exit(0)  # a server thread that will not stop must not keep this process alive
    return 0


if __name__ == "__main__":
    sys.exit(main())
