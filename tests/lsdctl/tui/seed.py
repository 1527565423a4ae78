"""History written straight into a daemon's SQLite (through daemon.store) and its
project's run folders: runs of every kind and state, loss curves, validation points,
block grids with a failed block, logs and checkpoints, all at fixed times so
screenshots do not change.

"Running" runs stand on a live `sleep` process of the test's (the daemon re-attaches
to a running run whose process lives), so they stay running and never train.
"""

from __future__ import annotations

import json
import math
import os
import subprocess
from dataclasses import dataclass, field

from daemon import launcher
from daemon.store import Store
from daemon.tables import (
    BlockGridRow,
    BlockRow,
    GpuReservationRow,
    RunConfigRow,
    RunRow,
)
from daemon.tailer import Tailer
from engine.project.layout import Project
from tests.daemon.conftest import Daemon

T0 = 1_789_992_000.0  # 2026-09-21 12:00:00 UTC: the seeded run ids tell the same times

TRAIN_DONE = "train-20260921-120000-a1b2"
TRAIN_RUNNING = "train-20260921-123000-c3d4"
PREDICT_RUNNING = "predict-20260921-124000-e5f6"
SEGMENT_FAILED = "segment-20260921-121500-0a0b"
EVALUATE_DONE = "evaluate-20260921-114500-1c1d"
TRAIN_INTERRUPTED = "train-20260920-090000-2e2f"

BLOCK_ERROR = (
    "Traceback (most recent call last):\n"
    '  File "engine/fragments.py", line 88, in process\n'
    "    fragments = watershed(boundaries, seeds)\n"
    "ValueError: affinities of block 7 are all NaN"
)


@dataclass
class Seeded:
    daemon: Daemon
    sleeper: subprocess.Popen[bytes] | None = None
    run_ids: list[str] = field(default_factory=list)

    def stop(self) -> None:
        if self.sleeper is not None:
            self.sleeper.kill()
            self.sleeper.wait()


def sleeper_for(daemon: Daemon) -> subprocess.Popen[bytes]:
    """A process for seeded running runs, ended with the daemon's home (LSDCTL_HOME)."""
    return subprocess.Popen(["sleep", "900"], env={**os.environ, "LSDCTL_HOME": str(daemon.home)})


# TRAIN_DONE validated every 1000 steps: (step, VOI, threshold); the best is at 4000.
VALIDATION = [
    (1000, 1.482, 0.35),
    (2000, 0.973, 0.45),
    (3000, 0.768, 0.5),
    (4000, 0.612, 0.55),
    (5000, 0.647, 0.55),
    (6000, 0.655, 0.6),
]


def validation_event(step: int, voi: float, threshold: float, t: float = T0) -> dict[str, object]:
    """A `validation` event as the engine writes it (scores over one val volume)."""
    split, merge = round(voi * 0.58, 4), round(voi * 0.42, 4)
    return {
        "t": t,
        "type": "validation",
        "step": step,
        "voi_split": split,
        "voi_merge": merge,
        "voi": voi,
        "arand": round(voi / 8, 4),
        "threshold": threshold,
        "best": False,
        "seconds": 14.5,
        "volumes": {
            "synth_val": {"voi_split": split, "voi_merge": merge, "voi": voi, "voxels": 110592}
        },
    }


def loss_curve(steps: int, every: int, seed: float = 0.0) -> list[tuple[int, float]]:
    """A falling loss with some wobble, deterministic."""
    return [
        (step, 0.05 + 0.6 * math.exp(-step / 1500) + 0.02 * math.sin(step * 0.37 + seed) ** 2)
        for step in range(every, steps + 1, every)
    ]


def seed_history(daemon: Daemon, gpus: bool = False) -> Seeded:
    """Six runs of project p (two of them running); call before the daemon starts."""
    project = Project(daemon.projects / "p")
    config = project.load_config().model_dump(mode="json")
    sleeper = sleeper_for(daemon)
    pid, pid_start = sleeper.pid, launcher.start_time(sleeper.pid)
    store = Store(daemon.home / "lsdctl.db")
    with store.session() as session:
        owner = store.project(session, str(project.path.absolute()), "p")
        assert owner.id is not None

        def add(run_id: str, kind: str, state: str, minutes: float, **fields: object) -> RunRow:
            created = T0 + minutes * 60
            run = RunRow(
                id=run_id,
                project_id=owner.id,  # type: ignore[arg-type]
                kind=kind,
                state=state,
                run_dir=str(project.runs_dir / run_id),
                created=created,
                started=created + 2,
                attempts=1,
                **fields,  # type: ignore[arg-type]
            )
            if state in ("succeeded", "failed", "cancelled", "interrupted"):
                run.finished = created + 600
            session.add(run)
            session.flush()
            assert run.seq is not None
            session.add(
                RunConfigRow(
                    run_seq=run.seq,
                    config_json=json.dumps(config),
                    inputs_json=json.dumps({"volumes": ["train/synth0.zarr"]}),
                    overrides_json="{}",
                )
            )
            folder = project.runs_dir / run_id
            folder.mkdir(parents=True, exist_ok=True)
            (folder / "log.txt").write_text(
                "".join(f"{run_id}: line {i} of the log\n" for i in range(1, 31))
            )
            return run

        def grid(run: RunRow, task: str) -> BlockGridRow:
            assert run.seq is not None
            return BlockGridRow(
                run_seq=run.seq,
                task=task,
                shape="2,3,4",
                total=24,
                block="20,20,20",
                offset="0,0,0",
                t=T0,
            )

        def losses(run: RunRow, points: list[tuple[int, float]]) -> None:
            store.add_metrics(
                session,
                [
                    {
                        "run_seq": run.seq,
                        "name": "loss",
                        "step": s,
                        "attempt": 1,
                        "value": v,
                        "t": T0 + s / 10,
                    }
                    for s, v in points
                ],
            )

        done = add(
            TRAIN_DONE,
            "train",
            "succeeded",
            0,
            progress_done=6000,
            progress_total=6000,
            exit_code=0,
            reason="done",
            rate=11.8,
        )
        curve = loss_curve(6000, 25)
        losses(done, curve)
        done.latest_step, done.latest_loss = curve[-1]
        checkpoints = project.runs_dir / TRAIN_DONE / "checkpoints"
        checkpoints.mkdir()
        for iteration in (2000, 4000, 6000):
            path = checkpoints / f"checkpoint_{iteration:08d}.pt"
            path.write_bytes(b"\0" * 2048 * (iteration // 1000))
            os.utime(path, (T0 + iteration / 10, T0 + iteration / 10))
        step, voi, threshold = min(VALIDATION, key=lambda v: v[1])
        (checkpoints / "best.json").write_text(
            json.dumps(
                {
                    "iteration": step,
                    "path": str(checkpoints / f"checkpoint_{step:08d}.pt"),
                    "threshold": threshold,
                    "voi": voi,
                }
            )
        )
        # Read by the daemon's own tailer, as it read them while the run ran.
        with (project.runs_dir / TRAIN_DONE / "events.jsonl").open("w") as events:
            for step, voi, threshold in VALIDATION:
                event = validation_event(step, voi, threshold, T0 + step / 10)
                events.write(json.dumps(event) + "\n")
        Tailer(store).tail(session, done, until_end=True)

        running = add(
            TRAIN_RUNNING,
            "train",
            "running",
            30,
            progress_done=3400,
            progress_total=10000,
            rate=12.5,
            pid=pid,
            pid_start=pid_start,
            gpus="0" if gpus else "",
            gpus_requested=1 if gpus else 0,
        )
        curve = loss_curve(3400, 20, seed=1.0)
        losses(running, curve)
        running.latest_step, running.latest_loss = curve[-1]

        predict = add(
            PREDICT_RUNNING,
            "predict",
            "running",
            40,
            progress_done=31,
            progress_total=48,
            rate=0.8,
            pid=pid,
            pid_start=pid_start,
            gpus="1" if gpus else "",
            gpus_requested=1 if gpus else 0,
            workers=2,
        )
        for task in ("predict-synth0", "predict-synth1"):
            session.add(grid(predict, task))
        for index in range(24):
            status = "done" if index < 17 else "running" if index < 19 else None
            if index == 7:
                status = "failed"
            if status is None:
                continue
            z, rest = divmod(index, 12)
            y, x = divmod(rest, 4)
            session.add(
                BlockRow(
                    run_seq=predict.seq,
                    block_id=f"predict-synth0:{index}",
                    status=status,
                    worker=str(index % 2),
                    t=T0 + index,
                    task="predict-synth0",
                    grid=f"{z},{y},{x}",
                    error=BLOCK_ERROR if status == "failed" else None,
                    seconds=1.25 if status == "done" else None,
                )
            )
        for index in range(14):
            z, rest = divmod(index, 12)
            y, x = divmod(rest, 4)
            session.add(
                BlockRow(
                    run_seq=predict.seq,
                    block_id=f"predict-synth1:{index}",
                    status="done",
                    worker="0",
                    t=T0 + index,
                    task="predict-synth1",
                    grid=f"{z},{y},{x}",
                    seconds=1.5,
                )
            )

        segment = add(
            SEGMENT_FAILED,
            "segment",
            "failed",
            15,
            progress_done=20,
            progress_total=24,
            exit_code=1,
            error="block fragments-synth0:7 failed 3 times",
            reason="block fragments-synth0:7 failed 3 times (see log.txt)",
        )
        session.add(grid(segment, "fragments-synth0"))
        for index in range(21):
            session.add(
                BlockRow(
                    run_seq=segment.seq,
                    block_id=f"fragments-synth0:{index}",
                    status="failed" if index == 7 else "done",
                    worker="0",
                    t=T0 + index,
                    task="fragments-synth0",
                    error=BLOCK_ERROR if index == 7 else None,
                )
            )

        evaluate = add(
            EVALUATE_DONE,
            "evaluate",
            "succeeded",
            -15,
            progress_done=9,
            progress_total=9,
            exit_code=0,
            reason="done",
        )
        evaluate.result_json = json.dumps(
            {"type": "result", "best": {"threshold": 0.4, "voi_split": 0.31, "arand": 0.08}}
        )
        add(
            TRAIN_INTERRUPTED,
            "train",
            "interrupted",
            -27 * 60,
            progress_done=1200,
            progress_total=10000,
            reason=f"killed by SIGKILL; `lsdctl resume {TRAIN_INTERRUPTED}` continues it",
            latest_loss=0.2113,
            latest_step=1200,
        )
        if gpus:
            session.add(GpuReservationRow(gpu_index=0, run_seq=running.seq, shared=False))
            session.add(GpuReservationRow(gpu_index=1, run_seq=predict.seq, shared=False))
        session.commit()
    store.close()
    ids = [
        PREDICT_RUNNING,
        TRAIN_RUNNING,
        SEGMENT_FAILED,
        TRAIN_DONE,
        EVALUATE_DONE,
        TRAIN_INTERRUPTED,
    ]
    return Seeded(daemon, sleeper, ids)


def seed_many(daemon: Daemon, count: int) -> None:
    """`count` finished runs of project p, in one transaction."""
    project = Project(daemon.projects / "p")
    store = Store(daemon.home / "lsdctl.db")
    states = ("succeeded", "failed", "cancelled", "interrupted")
    kinds = ("train", "predict", "segment", "evaluate")
    with store.session() as session:
        owner = store.project(session, str(project.path.absolute()), "p")
        assert owner.id is not None
        for i in range(count):
            kind = kinds[i % 4]
            session.add(
                RunRow(
                    id=f"{kind}-20260101-{i // 3600:02d}{i // 60 % 60:02d}{i % 60:02d}-{i:04x}",
                    project_id=owner.id,
                    kind=kind,
                    state=states[i % 7 % 4],
                    run_dir=str(project.runs_dir / f"run{i}"),
                    created=T0 - count + i,
                    attempts=1,
                    progress_done=i % 100,
                    progress_total=100,
                    latest_loss=1.0 / (i + 1) if kind == "train" else None,
                    latest_step=i if kind == "train" else None,
                )
            )
        session.commit()
    store.close()
