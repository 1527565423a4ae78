"""Starting engine entry points as processes of their own, and recognising them later.

Each run is `python -m engine.<kind> RUN_DIR` in a new session (so killing the daemon,
even with -9, leaves it running), with stdout and stderr appended to RUN_DIR/log.txt.
A pid alone is not an identity (pids are reused), so a run is recorded as pid plus the
process start time from /proc/PID/stat.
"""

from __future__ import annotations

import logging
import os
import signal
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

from engine.contract import LOG_FILE

logger = logging.getLogger(__name__)

# The engine package sits beside the daemon's: runs use the same code as the daemon.
_SOURCE_ROOT = str(Path(__file__).resolve().parents[1])


@dataclass
class Launched:
    pid: int
    start_time: int | None
    process: subprocess.Popen[bytes]


def _stat_fields(pid: int) -> list[str] | None:
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            data = f.read().decode(errors="replace")
    except OSError:
        return None
    # The command name (field 2) may contain spaces and parentheses: split after its end.
    return data[data.rfind(")") + 2 :].split()


def start_time(pid: int) -> int | None:
    """Field 22 of /proc/PID/stat: clock ticks after boot at which the process started."""
    fields = _stat_fields(pid)
    return int(fields[19]) if fields and len(fields) > 19 else None


def is_alive(pid: int, started: int | None) -> bool:
    """True when process `pid` exists, is no zombie, and is the one that started at `started`."""
    fields = _stat_fields(pid)
    if not fields or fields[0] in ("Z", "X"):
        return False
    return started is None or (len(fields) > 19 and int(fields[19]) == started)


def launch(
    kind: str,
    run_dir: Path,
    cwd: Path,
    gpus: list[int],
    iterations: int | None,
    run_id: str,
) -> Launched:
    command = [sys.executable, "-m", f"engine.{kind}", str(run_dir)]
    if iterations is not None:
        command += ["--iterations", str(iterations)]
    env = dict(os.environ)
    env["CUDA_VISIBLE_DEVICES"] = ",".join(str(i) for i in gpus)
    env["PYTHONUNBUFFERED"] = "1"
    env["LSDCTL_RUN_ID"] = run_id
    env["PYTHONPATH"] = os.pathsep.join(p for p in (_SOURCE_ROOT, env.get("PYTHONPATH")) if p)
    run_dir.mkdir(parents=True, exist_ok=True)
    with (run_dir / LOG_FILE).open("ab") as log:
        process = subprocess.Popen(
            command,
            cwd=cwd,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    logger.info("run %s: started %s (pid %d)", run_id, " ".join(command), process.pid)
    return Launched(process.pid, start_time(process.pid), process)


def signal_process(pid: int, started: int | None, sig: int) -> bool:
    """Signal the run's main process, if it is still the same process."""
    if not is_alive(pid, started):
        return False
    try:
        os.kill(pid, sig)
    except ProcessLookupError:
        return False
    return True


def kill_group(pgid: int) -> None:
    """SIGKILL a run's process group (its leader's pid is `pgid`)."""
    try:
        os.killpg(pgid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass


def kill_orphans(pgid: int) -> None:
    """SIGKILL the workers a dead run leader left behind in its process group.

    Linux gives no new process a pid still in use as a process group id, so while any
    of the run's workers live, pid `pgid` is free or still the leader. Once pid `pgid`
    exists again it is someone else's: then nothing is signalled.
    """
    if not os.path.exists(f"/proc/{pgid}"):
        kill_group(pgid)
