"""SQLite through sqlmodel: WAL, a busy timeout, a schema version and its migrations.

One process writes (the daemon, from its event loop thread), so writers never contend;
WAL lets readers (the bench, a second `sqlite3` shell) read while it writes.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from sqlalchemy import Connection, Engine, event, func, insert, text
from sqlmodel import Session, SQLModel, col, create_engine, select

from daemon.errors import DaemonError
from daemon.tables import (
    SCHEMA_VERSION,
    AttemptRow,
    BlockGridRow,
    BlockRow,
    DependencyRow,
    GpuReservationRow,
    MetricRow,
    ProjectRow,
    RunConfigRow,
    RunRow,
    SchemaVersionRow,
    ValidationRow,
)

logger = logging.getLogger(__name__)

# MIGRATIONS[v] brings a database from version v to v + 1. A new database is created at
# SCHEMA_VERSION directly from the tables; an older one runs the steps it lacks.


def _blocks_with_grid(conn: Connection) -> None:
    """1 → 2: blocks know their task, grid position and error; block grids get a table."""
    present = {row[1] for row in conn.execute(text("PRAGMA table_info(block)"))}
    for column, kind in (("task", "VARCHAR"), ("grid", "VARCHAR"), ("error", "VARCHAR")):
        if column not in present:
            conn.execute(text(f"ALTER TABLE block ADD COLUMN {column} {kind}"))
    if "seconds" not in present:
        conn.execute(text("ALTER TABLE block ADD COLUMN seconds FLOAT"))
    BlockGridRow.__table__.create(conn, checkfirst=True)  # type: ignore[attr-defined]


def _validation(conn: Connection) -> None:
    """2 → 3: validation points get a table, and runs their best point."""
    present = {row[1] for row in conn.execute(text("PRAGMA table_info(run)"))}
    for column, kind in (
        ("best_step", "INTEGER"),
        ("best_voi", "FLOAT"),
        ("best_threshold", "FLOAT"),
    ):
        if column not in present:
            conn.execute(text(f"ALTER TABLE run ADD COLUMN {column} {kind}"))
    ValidationRow.__table__.create(conn, checkfirst=True)  # type: ignore[attr-defined]


MIGRATIONS: dict[int, Callable[[Connection], None]] = {1: _blocks_with_grid, 2: _validation}


class StoreError(DaemonError):
    """The database cannot be used (newer schema, unreadable file)."""


def _pragmas(dbapi_connection: Any, _record: Any) -> None:
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA busy_timeout=10000")
    # WAL with NORMAL: durable across a process crash, one fsync per checkpoint, not commit.
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.close()


class Store:
    def __init__(self, path: Path) -> None:
        self.path = path
        self.engine: Engine = create_engine(
            f"sqlite:///{path}", connect_args={"check_same_thread": False, "timeout": 10}
        )
        event.listen(self.engine, "connect", _pragmas)
        self.migrate()

    def close(self) -> None:
        self.engine.dispose()

    @contextmanager
    def session(self) -> Iterator[Session]:
        with Session(self.engine, expire_on_commit=False) as session:
            yield session

    # ---- schema ------------------------------------------------------------------------
    def version(self) -> int | None:
        with self.engine.connect() as conn:
            exists = conn.execute(
                text("SELECT name FROM sqlite_master WHERE type='table' AND name='schema_version'")
            ).first()
            if exists is None:
                return None
            value = conn.execute(text("SELECT MAX(version) FROM schema_version")).scalar()
            return int(value) if value is not None else None

    def migrate(self) -> None:
        current = self.version()
        if current is None:
            SQLModel.metadata.create_all(self.engine)
            with self.engine.begin() as conn:
                conn.execute(
                    insert(SchemaVersionRow).values(version=SCHEMA_VERSION, applied=time.time())
                )
            logger.info("created database %s (schema %d)", self.path, SCHEMA_VERSION)
            return
        if current > SCHEMA_VERSION:
            raise StoreError(
                f"{self.path} has schema version {current}, newer than this lsdctl "
                f"({SCHEMA_VERSION}): upgrade lsdctl or point LSDCTL_HOME elsewhere"
            )
        for version in range(current, SCHEMA_VERSION):
            with self.engine.begin() as conn:
                MIGRATIONS[version](conn)
                conn.execute(
                    insert(SchemaVersionRow).values(version=version + 1, applied=time.time())
                )
            logger.info("migrated %s to schema %d", self.path, version + 1)

    # ---- projects ----------------------------------------------------------------------
    def project(self, session: Session, path: str, name: str) -> ProjectRow:
        row = session.exec(select(ProjectRow).where(ProjectRow.path == path)).first()
        if row is None:
            row = ProjectRow(name=name, path=path, created=time.time())
            session.add(row)
            session.flush()
        return row

    def projects_by_id(self, session: Session, ids: Iterable[int]) -> dict[int, ProjectRow]:
        wanted = set(ids)
        if not wanted:
            return {}
        rows = session.exec(select(ProjectRow).where(col(ProjectRow.id).in_(wanted))).all()
        return {row.id: row for row in rows if row.id is not None}

    # ---- runs --------------------------------------------------------------------------
    def run(self, session: Session, run_id: str) -> RunRow | None:
        return session.exec(select(RunRow).where(RunRow.id == run_id)).first()

    def runs(
        self,
        session: Session,
        project: str | None = None,
        state: str | None = None,
        kind: str | None = None,
        limit: int = 50,
        offset: int = 0,
    ) -> Sequence[RunRow]:
        query = select(RunRow)
        if project is not None:
            ids = session.exec(
                select(ProjectRow.id).where(
                    (ProjectRow.name == project) | (ProjectRow.path == project)
                )
            ).all()
            query = query.where(col(RunRow.project_id).in_(ids))
        if state is not None:
            query = query.where(RunRow.state == state)
        if kind is not None:
            query = query.where(RunRow.kind == kind)
        query = query.order_by(col(RunRow.seq).desc()).offset(offset)
        if limit > 0:
            query = query.limit(limit)
        return session.exec(query).all()

    def runs_in_state(self, session: Session, *states: str) -> Sequence[RunRow]:
        return session.exec(
            select(RunRow)
            .where(col(RunRow.state).in_(states))
            .order_by(col(RunRow.priority).desc(), col(RunRow.seq))
        ).all()

    def counts_by_state(self, session: Session) -> dict[str, int]:
        rows = session.exec(select(RunRow.state, func.count()).group_by(RunRow.state)).all()
        return {state: int(count) for state, count in rows}

    def config(self, session: Session, run_seq: int) -> RunConfigRow | None:
        return session.get(RunConfigRow, run_seq)

    def dependencies(self, session: Session, run_seq: int) -> list[RunRow]:
        after = session.exec(
            select(DependencyRow.after_seq).where(DependencyRow.run_seq == run_seq)
        ).all()
        if not after:
            return []
        return list(session.exec(select(RunRow).where(col(RunRow.seq).in_(after))).all())

    def dependency_ids(self, session: Session, run_seqs: Iterable[int]) -> dict[int, list[str]]:
        seqs = list(run_seqs)
        result: dict[int, list[str]] = {seq: [] for seq in seqs}
        if not seqs:
            return result
        rows = session.exec(
            select(DependencyRow.run_seq, RunRow.id)
            .join(RunRow, col(RunRow.seq) == col(DependencyRow.after_seq))
            .where(col(DependencyRow.run_seq).in_(seqs))
        ).all()
        for run_seq, after_id in rows:
            result[run_seq].append(after_id)
        return result

    def attempts(self, session: Session, run_seq: int) -> Sequence[AttemptRow]:
        return session.exec(
            select(AttemptRow).where(AttemptRow.run_seq == run_seq).order_by(col(AttemptRow.number))
        ).all()

    def attempt(self, session: Session, run_seq: int, number: int) -> AttemptRow | None:
        return session.exec(
            select(AttemptRow).where(AttemptRow.run_seq == run_seq, AttemptRow.number == number)
        ).first()

    # ---- metrics -----------------------------------------------------------------------
    def add_metrics(self, session: Session, rows: list[dict[str, Any]]) -> None:
        if rows:
            # A step seen twice (re-read after a crash between read and commit) is kept once.
            session.execute(insert(MetricRow).prefix_with("OR IGNORE"), rows)

    def metrics(
        self,
        session: Session,
        run_seq: int,
        name: str | None,
        since_step: int | None,
        limit: int,
    ) -> Sequence[MetricRow]:
        query = select(MetricRow).where(MetricRow.run_seq == run_seq)
        if name is not None:
            query = query.where(MetricRow.name == name)
        if since_step is not None:
            query = query.where(MetricRow.step > since_step)
        query = query.order_by(col(MetricRow.step), col(MetricRow.attempt))
        if limit > 0:
            query = query.limit(limit)
        return session.exec(query).all()

    def latest_metrics(self, session: Session, run_seq: int) -> list[MetricRow]:
        names = session.exec(
            select(MetricRow.name).where(MetricRow.run_seq == run_seq).distinct()
        ).all()
        latest = []
        for name in names:
            row = session.exec(
                select(MetricRow)
                .where(MetricRow.run_seq == run_seq, MetricRow.name == name)
                .order_by(col(MetricRow.step).desc(), col(MetricRow.attempt).desc())
                .limit(1)
            ).first()
            if row is not None:
                latest.append(row)
        return latest

    # ---- validation --------------------------------------------------------------------
    def validation(self, session: Session, run_seq: int) -> Sequence[ValidationRow]:
        return session.exec(
            select(ValidationRow)
            .where(ValidationRow.run_seq == run_seq)
            .order_by(col(ValidationRow.step))
        ).all()

    def best_validation(self, session: Session, run_seq: int) -> ValidationRow | None:
        """The point with the lowest VOI; the earliest step wins a tie."""
        return session.exec(
            select(ValidationRow)
            .where(ValidationRow.run_seq == run_seq, col(ValidationRow.voi).is_not(None))
            .order_by(col(ValidationRow.voi), col(ValidationRow.step))
            .limit(1)
        ).first()

    def best_validations(
        self, session: Session, runs: Iterable[RunRow]
    ) -> dict[int, ValidationRow]:
        """Run seq → its best point (as denormalised on the run), for runs that have one."""
        seqs = [r.seq for r in runs if r.seq is not None and r.best_step is not None]
        if not seqs:
            return {}
        rows = session.exec(
            select(ValidationRow)
            .join(
                RunRow,
                (col(RunRow.seq) == col(ValidationRow.run_seq))
                & (col(RunRow.best_step) == col(ValidationRow.step)),
            )
            .where(col(ValidationRow.run_seq).in_(seqs))
        ).all()
        return {row.run_seq: row for row in rows}

    # ---- blocks -------------------------------------------------------------------------
    def block_grids(self, session: Session, run_seq: int) -> Sequence[BlockGridRow]:
        return session.exec(
            select(BlockGridRow)
            .where(BlockGridRow.run_seq == run_seq)
            .order_by(col(BlockGridRow.t), col(BlockGridRow.task))
        ).all()

    def blocks(self, session: Session, run_seq: int, task: str | None = None) -> Sequence[BlockRow]:
        query = select(BlockRow).where(BlockRow.run_seq == run_seq)
        if task is not None:
            query = query.where(BlockRow.task == task)
        return session.exec(query).all()

    # ---- GPU reservations --------------------------------------------------------------
    def reserve(self, session: Session, run_seq: int, gpus: Iterable[int], shared: bool) -> None:
        for index in gpus:
            session.add(GpuReservationRow(gpu_index=index, run_seq=run_seq, shared=shared))

    def release(self, session: Session, run_seq: int) -> None:
        for row in session.exec(
            select(GpuReservationRow).where(GpuReservationRow.run_seq == run_seq)
        ).all():
            session.delete(row)

    # ---- scheduling --------------------------------------------------------------------
    def queued_runs(self, session: Session) -> Sequence[RunRow]:
        """Queued runs that may start, in launch order: priority, then first come."""
        return session.exec(
            select(RunRow)
            .where(RunRow.state == "queued", col(RunRow.hold).is_(False))
            .order_by(col(RunRow.priority).desc(), col(RunRow.seq))
        ).all()

    def dependency_states(
        self, session: Session, run_seqs: Iterable[int]
    ) -> dict[int, list[tuple[str, str]]]:
        """For each run, the (id, state) of the runs it waits for."""
        seqs = list(run_seqs)
        result: dict[int, list[tuple[str, str]]] = {seq: [] for seq in seqs}
        if not seqs:
            return result
        rows = session.exec(
            select(DependencyRow.run_seq, RunRow.id, RunRow.state)
            .join(RunRow, col(RunRow.seq) == col(DependencyRow.after_seq))
            .where(col(DependencyRow.run_seq).in_(seqs))
        ).all()
        for run_seq, after_id, state in rows:
            result[run_seq].append((after_id, state))
        return result

    def gpu_holders(self, session: Session) -> dict[int, list[tuple[str, bool]]]:
        """GPU index → (run id, shared) of every reservation on it."""
        rows = session.exec(
            select(GpuReservationRow.gpu_index, RunRow.id, GpuReservationRow.shared).join(
                RunRow, col(RunRow.seq) == col(GpuReservationRow.run_seq)
            )
        ).all()
        holders: dict[int, list[tuple[str, bool]]] = {}
        for index, run_id, shared in rows:
            holders.setdefault(index, []).append((run_id, shared))
        return holders
