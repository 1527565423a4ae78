"""The queue: which run starts when, on which GPUs, and what became of it.

States: queued → running → succeeded | failed | cancelled | interrupted; `resume` puts
a stopped run back in the queue as a new attempt. Queued runs start by priority, then
first come, once the runs they wait for (`after`) have succeeded and their resources
are free: GPUs from NVML (never one GPU to two runs unless both allow sharing), or a
CPU slot. A run that cannot start yet says why in `reason`.

Everything here runs on the daemon's one event loop thread: the API handlers and this
loop are the only writers, one at a time, so SQLite never reports a lock.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import signal
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

from sqlmodel import Session

from daemon import launcher
from daemon.errors import Conflict, ProjectNotFound, RequestError, RunNotFound
from daemon.gpus import Gpus
from daemon.resolver import ResolveError, Resolver
from daemon.schemas import RunCreate, RunState
from daemon.store import Store
from daemon.tables import AttemptRow, DependencyRow, RunConfigRow, RunRow
from daemon.tailer import Tailer
from engine.contract import LOG_FILE, RUN_FILE, ResourcesAsked, RunRequest, WriteRequest, new_run_id

logger = logging.getLogger(__name__)

QUEUED, RUNNING = RunState.QUEUED.value, RunState.RUNNING.value


@dataclass(frozen=True)
class Settings:
    projects_root: Path
    poll_s: float = 0.25
    cancel_grace_s: float = 30.0
    max_cpu_runs: int = 1

    @classmethod
    def from_env(cls) -> Settings:
        env = os.environ
        return cls(
            projects_root=Path(env.get("LSDCTL_PROJECTS", "projects")).absolute(),
            poll_s=float(env.get("LSDCTL_POLL_S", "0.25")),
            cancel_grace_s=float(env.get("LSDCTL_CANCEL_GRACE_S", "30")),
            max_cpu_runs=max(1, int(env.get("LSDCTL_MAX_CPU_RUNS", "1"))),
        )


class Scheduler:
    def __init__(self, store: Store, resolver: Resolver, gpus: Gpus, settings: Settings) -> None:
        self.store = store
        self.resolver = resolver
        self.gpus = gpus
        self.settings = settings
        self.tailer = Tailer(store)
        self._children: dict[int, subprocess.Popen[bytes]] = {}
        self._killed: set[int] = set()
        self._wake = asyncio.Event()

    def wake(self) -> None:
        self._wake.set()

    # ---- requests ------------------------------------------------------------------------
    async def submit(self, request: RunCreate) -> RunRow:
        with self.store.session() as session:
            after = [
                seq
                for run_id in request.after
                if (seq := self.get_run(session, run_id, "in after").seq) is not None
            ]
            if request.parent is not None:
                self.get_run(session, request.parent, "as parent")
        path = Path(request.project)
        if not path.is_absolute():
            path = self.settings.projects_root / path
        try:
            # The resolver decides what the run gets (workers: as asked, else the project's
            # predict.num_workers); GPUs are reserved at launch, from those free then.
            resolved = await self.resolver.prepare(
                RunRequest(
                    kind=request.kind,
                    project=str(path),
                    preset=request.preset,
                    overrides=request.overrides,
                    inputs=request.inputs,
                    resources=ResourcesAsked(workers=request.workers),
                )
            )
        except ResolveError as exc:
            if exc.status == 404:
                raise ProjectNotFound(exc.message) from None
            raise RequestError(exc.message, status=exc.status) from None
        project_path, project_name = resolved.project.path, resolved.project.name
        with self.store.session() as session:
            run_id = new_run_id(request.kind)
            while self.store.run(session, run_id) is not None:  # 4 hex digits can collide
                run_id = new_run_id(request.kind)
            project = self.store.project(session, project_path, project_name)
            assert project.id is not None
            run = RunRow(
                id=run_id,
                project_id=project.id,
                kind=request.kind,
                state=QUEUED,
                reason=_held(run_id) if request.hold else "queued",
                priority=request.priority,
                hold=request.hold,
                gpus_requested=request.gpus,
                require_gpu=request.require_gpu,
                share_gpu=request.share_gpu,
                workers=resolved.resources.workers,
                iterations=request.iterations,
                run_dir=str(Path(project_path) / "runs" / run_id),
                parent=request.parent,
                created=time.time(),
            )
            session.add(run)
            session.flush()
            assert run.seq is not None
            session.add(
                RunConfigRow(
                    run_seq=run.seq,
                    config_json=json.dumps(resolved.config),
                    inputs_json=json.dumps(resolved.inputs),
                    overrides_json=json.dumps(request.overrides),
                )
            )
            for seq in dict.fromkeys(after):
                session.add(DependencyRow(run_seq=run.seq, after_seq=seq))
            session.commit()
        logger.info("run %s queued (%s, project %s)", run.id, run.kind, project_path)
        self.wake()
        return run

    def cancel(self, run_id: str) -> RunRow:
        with self.store.session() as session:
            run = self.get_run(session, run_id)
            if run.state == QUEUED:
                run.state, run.finished = RunState.CANCELLED.value, time.time()
                run.reason = "cancelled before it started"
            elif run.state == RUNNING:
                if run.cancel_requested is None:
                    run.cancel_requested = time.time()
                    run.reason = (
                        f"cancelling: asked to stop (killed after "
                        f"{self.settings.cancel_grace_s:g} s)"
                    )
                    if run.pid is not None:
                        # The main process only: it stops its own workers, then checkpoints.
                        launcher.signal_process(run.pid, run.pid_start, signal.SIGTERM)
            else:
                raise Conflict(f"run {run_id} is {run.state} already: nothing to cancel")
            session.add(run)
            session.commit()
        logger.info("run %s: cancel requested", run_id)
        self.wake()
        return run

    def resume(self, run_id: str, iterations: int | None) -> RunRow:
        with self.store.session() as session:
            run = self.get_run(session, run_id)
            if run.state in (QUEUED, RUNNING):
                raise Conflict(f"run {run_id} is {run.state}: nothing to resume")
            if run.state == RunState.SUCCEEDED and iterations is None:
                done = f" above its {run.progress_done}" if run.progress_done else ""
                raise Conflict(
                    f"run {run_id} succeeded: to train it further, "
                    f"`lsdctl resume {run_id} --iterations N` with N{done}"
                )
            if iterations is not None:
                run.iterations = iterations
            run.state, run.reason, run.hold = QUEUED, "queued (resumed)", False
            run.finished = run.exit_code = run.error = run.cancel_requested = None
            session.add(run)
            session.commit()
        logger.info("run %s: resumed (attempt %d next)", run_id, run.attempts + 1)
        self.wake()
        return run

    def release(self, run_id: str) -> RunRow:
        with self.store.session() as session:
            run = self.get_run(session, run_id)
            if run.state != QUEUED:
                raise Conflict(f"run {run_id} is {run.state}: only a queued run is held")
            run.hold, run.reason = False, "queued"
            session.add(run)
            session.commit()
        self.wake()
        return run

    def get_run(self, session: Session, run_id: str, where: str = "") -> RunRow:
        run = self.store.run(session, run_id)
        if run is None:
            suffix = f" {where}" if where else ""
            raise RunNotFound(f"no run {run_id!r}{suffix}: `lsdctl runs` lists the runs")
        return run

    # ---- the loop ------------------------------------------------------------------------
    async def recover(self) -> None:
        """After a (re)start: re-attach to live runs, settle the ones that died meanwhile."""
        with self.store.session() as session:
            for run in self.store.runs_in_state(session, RUNNING):
                if run.pid is not None and launcher.is_alive(run.pid, run.pid_start):
                    self.tailer.tail(session, run, until_end=True)
                    logger.info("run %s: re-attached to pid %d", run.id, run.pid)
                else:
                    self._finish(session, run, None)
            session.commit()

    async def run_forever(self) -> None:
        while True:
            try:
                await self.tick()
            except Exception:
                logger.exception("scheduler tick failed")
            try:
                await asyncio.wait_for(self._wake.wait(), self.settings.poll_s)
            except TimeoutError:
                pass
            self._wake.clear()

    async def tick(self) -> None:
        with self.store.session() as session:
            for run in self.store.runs_in_state(session, RUNNING):
                self._watch(session, run)
            session.commit()
        await self._schedule()

    def _watch(self, session: Session, run: RunRow) -> None:
        assert run.seq is not None
        self.tailer.tail(session, run)
        child = self._children.get(run.seq)
        if child is not None:
            code = child.poll()
            if code is None:
                self._enforce_cancel(run)
                return
            del self._children[run.seq]
            self._finish(session, run, code)
        elif run.pid is not None and launcher.is_alive(run.pid, run.pid_start):
            self._enforce_cancel(run)
        else:
            self._finish(session, run, None)

    def _enforce_cancel(self, run: RunRow) -> None:
        assert run.seq is not None
        if (
            run.cancel_requested is not None
            and time.time() - run.cancel_requested > self.settings.cancel_grace_s
            and run.seq not in self._killed
            and run.pid is not None
            and launcher.is_alive(run.pid, run.pid_start)
        ):
            logger.warning("run %s: still running after the grace period; killing it", run.id)
            launcher.kill_group(run.pid)
            self._killed.add(run.seq)

    def _finish(self, session: Session, run: RunRow, code: int | None) -> None:
        """The run's process is gone (exit `code`, None when it was not our child)."""
        assert run.seq is not None
        self.tailer.tail(session, run, until_end=True)
        if run.pid is not None:
            launcher.kill_orphans(run.pid)  # workers of a leader killed with -9, say
        state, reason = self._outcome(run, code)
        run.state, run.reason = state.value, reason
        if state == RunState.FAILED and not run.error:
            run.error = reason
        run.exit_code, run.finished, run.pid, run.pid_start = code, time.time(), None, None
        self._killed.discard(run.seq)
        self.store.release(session, run.seq)
        attempt = self.store.attempt(session, run.seq, run.attempts)
        if attempt is not None:
            attempt.finished, attempt.exit_code = run.finished, code
            session.add(attempt)
        session.add(run)
        logger.info("run %s: %s (exit code %s)", run.id, state.value, code)

    @staticmethod
    def _outcome(run: RunRow, code: int | None) -> tuple[RunState, str]:
        resume = f"`lsdctl resume {run.id}` continues it"
        if run.cancel_requested is not None:
            return RunState.CANCELLED, f"cancelled; {resume}"
        if code == 0:
            return RunState.SUCCEEDED, "done"
        if code is None:
            # Not our child: its exit code is lost. The events tell what it got to.
            if run.result_json:
                return RunState.SUCCEEDED, "done"
            if run.error:
                return RunState.FAILED, f"failed: {run.error}"
            return (
                RunState.INTERRUPTED,
                f"its process ended while the daemon was away (exit code unknown); {resume}",
            )
        if code == 3:
            return RunState.INTERRUPTED, f"interrupted; checkpoint saved; {resume}"
        if code < 0:
            name = signal.Signals(-code).name if -code in signal.valid_signals() else -code
            return RunState.INTERRUPTED, f"killed by {name}; {resume}"
        message = run.error or f"exit code {code}"
        return RunState.FAILED, f"{message} (see {Path(run.run_dir) / LOG_FILE})"

    # ---- starting runs ---------------------------------------------------------------------
    async def _schedule(self) -> None:
        launches: list[tuple[int, list[int]]] = []
        with self.store.session() as session:
            queued = self.store.queued_runs(session)
            if not queued:
                return
            running = self.store.runs_in_state(session, RUNNING)
            cpu_slots = self.settings.max_cpu_runs - sum(1 for r in running if not r.gpus)
            holders = self.store.gpu_holders(session)
            waits = self.store.dependency_states(session, (r.seq for r in queued if r.seq))
            for run in queued:
                assert run.seq is not None
                pending = [(i, s) for i, s in waits[run.seq] if s != RunState.SUCCEEDED]
                if pending:
                    _say(run, "waiting for " + ", ".join(f"{i} ({s})" for i, s in pending))
                    continue
                gpus, wait = self._pick_gpus(run, holders)
                if wait is not None:
                    _say(run, wait)
                    continue
                if not gpus:
                    if cpu_slots <= 0:
                        _say(
                            run,
                            f"waiting for a CPU slot: {self.settings.max_cpu_runs} run(s) on "
                            "the CPU already (LSDCTL_MAX_CPU_RUNS)",
                        )
                        continue
                    cpu_slots -= 1
                for index in gpus:
                    holders.setdefault(index, []).append((run.id, run.share_gpu))
                launches.append((run.seq, gpus))
            session.commit()
        for seq, gpus in launches:
            await self._launch(seq, gpus)

    def _pick_gpus(
        self, run: RunRow, holders: dict[int, list[tuple[str, bool]]]
    ) -> tuple[list[int], str | None]:
        """GPUs for `run` (none: the CPU), or why it has to wait."""
        need = run.gpus_requested
        if need == 0:
            return [], None
        indices, why = self.gpus.indices()
        if not indices:
            return ([], f"waiting for a GPU: {why}") if run.require_gpu else ([], None)
        if need > len(indices):
            return [], f"waiting for {need} GPUs: this machine has {len(indices)}"
        picked = [i for i in indices if not holders.get(i)][:need]
        if len(picked) < need and run.share_gpu:
            shareable = [
                i
                for i in indices
                if i not in picked and holders.get(i) and all(s for _, s in holders[i])
            ]
            shareable.sort(key=lambda i: len(holders[i]))
            picked += shareable[: need - len(picked)]
        if len(picked) < need:
            busy = sorted({r for i in indices for r, _ in holders.get(i, [])})
            return [], f"waiting for a GPU: all {len(indices)} in use (by {', '.join(busy)})"
        return picked, None

    async def _launch(self, seq: int, gpus: list[int]) -> None:
        with self.store.session() as session:
            run = session.get(RunRow, seq)
            if run is None or run.state != QUEUED or run.hold:
                return
            config = self.store.config(session, seq)
            project = self.store.projects_by_id(session, [run.project_id])[run.project_id]
        run_dir = Path(run.run_dir)
        if not (run_dir / RUN_FILE).exists() and config is not None:
            try:
                # Workers as resolved at submit; the executor follows the stored config.
                await self.resolver.write(
                    WriteRequest(
                        kind=run.kind,  # type: ignore[arg-type]
                        project=project.path,
                        run_id=run.id,
                        run_dir=str(run_dir),
                        config=json.loads(config.config_json),
                        inputs=json.loads(config.inputs_json),
                        resources=ResourcesAsked(gpus=gpus, workers=run.workers),
                    )
                )
            except ResolveError as exc:
                self._fail_to_start(seq, f"cannot write its run.toml: {exc.message}")
                return
        with self.store.session() as session:
            run = session.get(RunRow, seq)
            if run is None or run.state != QUEUED or run.hold:
                return  # cancelled or held while run.toml was written
            try:
                launched = launcher.launch(
                    run.kind, run_dir, Path(project.path).parent, gpus, run.iterations, run.id
                )
            except OSError as exc:
                session.rollback()
                self._fail_to_start(seq, f"cannot start its process: {exc}")
                return
            now = time.time()
            run.state, run.reason, run.started, run.attempts = RUNNING, None, now, run.attempts + 1
            run.pid, run.pid_start, run.gpus = launched.pid, launched.start_time, _csv(gpus)
            run.error = run.exit_code = run.result_json = run.finished = None
            run.cancel_requested = run.progress_t0 = run.progress_done0 = None
            self.store.reserve(session, seq, gpus, run.share_gpu)
            session.add(
                AttemptRow(
                    run_seq=seq,
                    number=run.attempts,
                    pid=launched.pid,
                    started=now,
                    gpus=_csv(gpus),
                    iterations=run.iterations,
                )
            )
            session.add(run)
            session.commit()
        self._children[seq] = launched.process
        self.tailer.reset(run)

    def _fail_to_start(self, seq: int, message: str) -> None:
        with self.store.session() as session:
            run = session.get(RunRow, seq)
            if run is None:
                return
            run.state, run.error, run.reason = RunState.FAILED.value, message, message
            run.finished = time.time()
            session.add(run)
            session.commit()
        logger.warning("run %s: %s", run.id, message)


def _say(run: RunRow, reason: str) -> None:
    if run.reason != reason:
        run.reason = reason


def _held(run_id: str) -> str:
    return f"held: `lsdctl run release {run_id}` lets it start"


def _csv(values: list[int]) -> str:
    return ",".join(str(v) for v in values)
