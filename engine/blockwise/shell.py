"""The shell of a blockwise entry point (`python -m engine.predict|segment|evaluate`):
arguments, logging, events, SIGTERM and the exit codes of the run-directory contract."""

from __future__ import annotations

import argparse
import logging
import os
import signal
import sys
import traceback
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import NoReturn

from engine.blockwise.stopping import Interrupted, request_stop
from engine.contract import EVENTS_FILE, RUN_FILE, EventWriter
from engine.entry import configure_logging, missing_run_dir
from engine.errors import InputError

logger = logging.getLogger(__name__)


def entry_point(
    prog: str,
    description: str | None,
    run: Callable[[Path, bool, EventWriter], int],
    argv: Sequence[str] | None = None,
) -> int:
    """The shell of a blockwise entry point (`python -m engine.predict|segment RUN_DIR
    [--overwrite]`): logging, events, SIGTERM (stops the run, see `request_stop`) and
    the exit codes of the run-directory contract: 0 done, 1 failed, 2 bad input (one
    `error:` line on stderr), 3 interrupted (resumable)."""
    parser = argparse.ArgumentParser(prog=prog, description=description)
    parser.add_argument("run_dir", type=Path)
    parser.add_argument(
        "--overwrite", action="store_true", help="Replace outputs of another run or settings."
    )
    args = parser.parse_args(argv)
    configure_logging()
    run_dir: Path = args.run_dir
    if missing_run_dir(run_dir, RUN_FILE):
        return 2
    events = EventWriter(run_dir / EVENTS_FILE)
    previous = signal.getsignal(signal.SIGTERM)
    signal.signal(signal.SIGTERM, lambda signum, frame: request_stop())
    try:
        return run(run_dir, args.overwrite, events)
    except InputError as exc:
        events.emit("error", durable=True, message=str(exc))
        sys.stderr.write(f"error: {exc}\n")
        return 2
    except (Interrupted, KeyboardInterrupt):
        # Finished blocks are recorded; the next start does the rest.
        events.emit("interrupted", durable=True, message="stopped by a signal; resumable")
        logger.info("interrupted: finished blocks are kept, start the run again to resume")
        return 3
    except Exception as exc:
        events.emit("error", durable=True, message=f"{type(exc).__name__}: {exc}")
        traceback.print_exc()
        return 1
    finally:
        events.close()
        signal.signal(signal.SIGTERM, previous)


def exit_process(code: int) -> NoReturn:
    """Leave a blockwise entry point's process. Not sys.exit: after an interruption
    daisy's server thread (Rust) may still run, and interpreter shutdown under it aborts
    the process (exit 134 instead of 3)."""
    logging.shutdown()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)
