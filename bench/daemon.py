"""Benchmark the daemon: how fast a submitted run starts, and how fast runs are listed.

A real `python -m daemon` on a temporary home, whose database is first seeded through
daemon.store with 10,000 finished runs (each with its resolved config) and 1,000,000
metric points (100 loss values per run).

- submit_to_running_s: POST /v1/runs of a training run of a tiny project, until the
  daemon has launched its process and recorded it as running (the run's `started`
  time, on the same clock); the median of 5 runs, each cancelled before the next.
- runs_list_s: GET /v1/runs with its default page (the newest 50, what `lsdctl runs`
  and the TUI ask for), over the unix socket with a warm client; the median of 20.

Run from the repository root: ``.venv/bin/python bench/daemon.py``. The last line is
``daemon submit_to_running_s=<x> runs_list_s=<y>``; goals x < 0.5, y < 0.3.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import datetime
from pathlib import Path

# This script is named like the package it measures: run as a script, its folder comes
# first on sys.path and `import daemon` would import this file.
_HERE = Path(__file__).resolve().parent
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != _HERE]
ROOT = _HERE.parent

import httpx  # noqa: E402
from sqlalchemy import insert  # noqa: E402

from daemon.store import Store  # noqa: E402
from daemon.tables import MetricRow, ProjectRow, RunConfigRow, RunRow  # noqa: E402
from engine.data.synth import synthesize  # noqa: E402
from engine.data.volume import write_volume  # noqa: E402
from engine.project import config as cfg  # noqa: E402
from engine.project.layout import init_project  # noqa: E402

RUNS = 10_000
POINTS_PER_RUN = 100
SUBMITS = 5
LISTS = 20
_STATES = ("succeeded", "failed", "cancelled", "interrupted")


def make_project(root: Path) -> Path:
    project = init_project("bench", preset="tiny", root=root)
    raw, labels = synthesize([48, 48, 48], [8, 8, 8], seed=0)
    write_volume(project.path / "train" / "synth0.zarr", raw, labels, [8, 8, 8])
    return project.path


def seed(db: Path, project: Path) -> None:
    store = Store(db)
    config = json.dumps(cfg.from_preset("tiny").model_dump(mode="json"))  # a real one, ~2 KB
    now = time.time() - RUNS * 60
    with store.engine.begin() as conn:
        conn.execute(
            insert(ProjectRow).values(id=1, name=project.name, path=str(project), created=now)
        )
        runs = []
        for i in range(RUNS):
            run_id = f"train-{datetime.fromtimestamp(now + 60 * i):%Y%m%d-%H%M%S}-{i:04x}"
            runs.append(
                {
                    "seq": i + 1,
                    "id": run_id,
                    "project_id": 1,
                    "kind": "train",
                    "state": _STATES[i % len(_STATES)],
                    "reason": "done",
                    "run_dir": str(project / "runs" / run_id),
                    "created": now + 60 * i,
                    "started": now + 60 * i + 1,
                    "finished": now + 60 * i + 50,
                    "attempts": 1,
                    "exit_code": 0,
                    "progress_done": POINTS_PER_RUN,
                    "progress_total": POINTS_PER_RUN,
                    "latest_loss": 0.1,
                    "latest_step": POINTS_PER_RUN,
                }
            )
        conn.execute(insert(RunRow), runs)
        conn.execute(
            insert(RunConfigRow),
            [
                {
                    "run_seq": i + 1,
                    "config_json": config,
                    "inputs_json": "{}",
                    "overrides_json": "{}",
                }
                for i in range(RUNS)
            ],
        )
        for start in range(0, RUNS, 1000):
            conn.execute(
                insert(MetricRow),
                [
                    {
                        "run_seq": seq,
                        "name": "loss",
                        "step": step,
                        "attempt": 1,
                        "value": 1.0 / step,
                        "t": now + step,
                    }
                    for seq in range(start + 1, start + 1001)
                    for step in range(1, POINTS_PER_RUN + 1)
                ],
            )
    store.close()


def start_daemon(home: Path, projects: Path) -> subprocess.Popen[bytes]:
    env = {
        **os.environ,
        "LSDCTL_HOME": str(home),
        "LSDCTL_PROJECTS": str(projects),
        "LSDCTL_CANCEL_GRACE_S": "2",
        "LSDCTL_LOG_LEVEL": "WARNING",
    }
    with (home / "daemon.log").open("ab") as log:
        process = subprocess.Popen(
            [sys.executable, "-m", "daemon"],
            cwd=ROOT,
            env=env,
            stdout=log,
            stderr=log,
            start_new_session=True,
        )
    return process


def wait_until(http: httpx.Client, run_id: str, states: tuple[str, ...]) -> dict[str, object]:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        run: dict[str, object] = http.get(f"/v1/runs/{run_id}").json()
        if run["state"] in states:
            return run
        time.sleep(0.005)
    raise SystemExit(f"run {run_id} never reached {states}")


def main() -> None:
    home = Path(tempfile.mkdtemp(prefix="lb", dir="/tmp"))
    work = Path(tempfile.mkdtemp(prefix="lsdctl-bench-"))
    process = None
    try:
        project = make_project(work)
        t = time.perf_counter()
        seed(home / "lsdctl.db", project)
        print(
            f"seeded {RUNS} runs and {RUNS * POINTS_PER_RUN:,} metric points in "
            f"{time.perf_counter() - t:.1f} s"
        )
        process = start_daemon(home, work)
        http = httpx.Client(
            transport=httpx.HTTPTransport(uds=str(home / "daemon.sock")),
            base_url="http://lsdctl",
            timeout=60,
        )
        deadline = time.monotonic() + 30
        while True:
            try:
                http.get("/v1/health").raise_for_status()
                break
            except httpx.TransportError:
                if time.monotonic() > deadline:
                    raise SystemExit((home / "daemon.log").read_text()) from None
                time.sleep(0.05)

        starts = []
        for _ in range(SUBMITS):
            sent = time.time()
            response = http.post(
                "/v1/runs", json={"kind": "train", "project": str(project), "gpus": 0}
            )
            response.raise_for_status()
            run_id = response.json()["id"]
            run = wait_until(http, run_id, ("running", "succeeded", "failed"))
            started = datetime.fromisoformat(str(run["started"])).timestamp()
            starts.append(started - sent)
            http.post(f"/v1/runs/{run_id}/cancel")
            wait_until(http, run_id, ("cancelled", "failed", "succeeded"))
        print("submit to running (s):", " ".join(f"{s:.3f}" for s in starts))

        lists = []
        for _ in range(LISTS):
            t = time.perf_counter()
            page = http.get("/v1/runs")
            lists.append(time.perf_counter() - t)
            assert page.status_code == 200 and len(page.json()) == 50
        t = time.perf_counter()
        everything = http.get("/v1/runs", params={"limit": 0}).json()
        print(
            f"GET /v1/runs (newest 50 of {len(everything)}): median "
            f"{statistics.median(lists) * 1000:.1f} ms; all {len(everything)}: "
            f"{time.perf_counter() - t:.2f} s"
        )
        t = time.perf_counter()
        points = http.get(f"/v1/runs/{everything[-1]['id']}/metrics", params={"name": "loss"})
        print(
            f"GET /v1/runs/ID/metrics ({len(points.json()['points'])} points): "
            f"{(time.perf_counter() - t) * 1000:.1f} ms"
        )
        http.post("/v1/shutdown")
        process.wait(15)
        print(
            f"daemon submit_to_running_s={statistics.median(starts):.3f} "
            f"runs_list_s={statistics.median(lists):.4f}"
        )
    finally:
        if process is not None and process.poll() is None:
            process.send_signal(signal.SIGTERM)
            process.wait(15)
        _end_runs(home)
        shutil.rmtree(home, ignore_errors=True)
        shutil.rmtree(work, ignore_errors=True)


def _end_runs(home: Path) -> None:
    """Processes started for this benchmark carry its LSDCTL_HOME: end them by pid."""
    marker = f"LSDCTL_HOME={home}".encode()
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit() and int(entry.name) != os.getpid():
            try:
                if marker in (entry / "environ").read_bytes().split(b"\0"):
                    os.kill(int(entry.name), signal.SIGKILL)
            except OSError:
                pass


if __name__ == "__main__":
    main()
