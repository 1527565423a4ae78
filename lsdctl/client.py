"""The only way lsdctl talks to the daemon: HTTP over its unix socket (httpx).

With `LSDCTL_DAEMON_URL` (`http://HOST:PORT`), over TCP instead, to a daemon started
with `--tcp`: every request then carries its token, `LSDCTL_TOKEN`, else the content
of `LSDCTL_TOKEN_FILE`, else of the daemon home's `tcp.token` (a loopback daemon's own).

Transport and HTTP errors become lsdctl errors here, once: `DaemonNotRunning` when
nothing answers, `DaemonRefused` when the socket is someone else's or the token is
wrong, `RunNotFound` and `ProjectNotFound` (exit 2) for 404s, `UsageError` (exit 2) for
other 4xx with the daemon's one-line message, `LsdctlError` for the daemon's own failures.
"""

from __future__ import annotations

import errno
import os
import socket
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any, TypeVar

import httpx
from pydantic import BaseModel, TypeAdapter

from daemon.paths import DaemonPaths
from daemon.schemas import (
    BlockMap,
    Checkpoints,
    GpuReport,
    Health,
    LogChunk,
    Metrics,
    ResumeRequest,
    RunCreate,
    RunDetail,
    RunInfo,
    Validation,
)
from lsdctl.errors import LsdctlError, UsageError

M = TypeVar("M", bound=BaseModel)

_BASE_URL = "http://lsdctl"
_RUN_LIST = TypeAdapter(list[RunInfo])
_START_TIMEOUT_S = 10.0


class DaemonNotRunning(LsdctlError):
    """Nothing answers on the socket."""


class DaemonRefused(LsdctlError):
    """The socket answers but not to us: it belongs to another user."""


class RunNotFound(UsageError):
    pass


class ProjectNotFound(UsageError):
    pass


def daemon_url() -> str | None:
    """The TCP address of the daemon to talk to (`LSDCTL_DAEMON_URL`), if any."""
    return os.environ.get("LSDCTL_DAEMON_URL") or None


def _tcp_headers(paths: DaemonPaths) -> dict[str, str]:
    token = os.environ.get("LSDCTL_TOKEN", "").strip()
    if not token:
        named = os.environ.get("LSDCTL_TOKEN_FILE")
        path = Path(named).expanduser() if named else paths.token
        try:
            token = path.read_text().strip()
        except (OSError, UnicodeDecodeError) as exc:
            if named:
                raise UsageError(f"cannot read LSDCTL_TOKEN_FILE {path}: {exc}") from None
    return {"Authorization": f"Bearer {token}"} if token else {}


def _http_options(paths: DaemonPaths, url: str | None, timeout: float) -> dict[str, Any]:
    """httpx.Client/AsyncClient arguments (but the transport) for the unix socket or `url`."""
    if url is None:
        return {"base_url": _BASE_URL, "timeout": timeout}
    # trust_env=False: a proxy from the environment must not see the token
    return {"base_url": url, "timeout": timeout, "headers": _tcp_headers(paths), "trust_env": False}


def _tcp_error(exc: Exception, url: str) -> LsdctlError:
    if isinstance(exc, httpx.TimeoutException):
        return LsdctlError(f"the lsdctl daemon at {url} did not answer in time")
    if isinstance(exc, httpx.RemoteProtocolError):
        return LsdctlError(f"the lsdctl daemon at {url} closed the connection mid-request")
    return DaemonNotRunning(
        f"no lsdctl daemon answers at {url} (LSDCTL_DAEMON_URL): start one there with "
        "`python -m daemon --tcp HOST:PORT`, or unset LSDCTL_DAEMON_URL for the local one"
    )


def _transport_error(exc: Exception, paths: DaemonPaths, url: str | None = None) -> LsdctlError:
    if url is not None:
        return _tcp_error(exc, url)
    cause = exc.__cause__ or exc.__context__
    code = getattr(cause, "errno", None)
    if code in (errno.EACCES, errno.EPERM):
        return DaemonRefused(
            f"permission denied on the daemon socket {paths.socket}: it belongs to another "
            "user; set LSDCTL_HOME to a folder of your own"
        )
    if isinstance(exc, httpx.RemoteProtocolError):
        # The daemon closes connections from other users at once; a daemon that dies
        # mid-request closes them too, and then nothing listens any more.
        if _socket_owner(paths) not in (None, os.getuid()):
            return DaemonRefused(
                f"the lsdctl daemon at {paths.socket} closed the connection: it serves only "
                f"the user who started it (see {paths.log})"
            )
        if _listening(paths):
            return LsdctlError(
                f"the lsdctl daemon at {paths.socket} closed the connection mid-request "
                f"(see {paths.log})"
            )
    if isinstance(exc, httpx.TimeoutException):
        return LsdctlError(f"the lsdctl daemon at {paths.socket} did not answer in time")
    return DaemonNotRunning(
        f"the lsdctl daemon is not running (no answer on {paths.socket}): "
        "`lsdctl daemon start` starts it"
    )


def _socket_owner(paths: DaemonPaths) -> int | None:
    try:
        return paths.socket.stat().st_uid
    except OSError:
        return None


def _listening(paths: DaemonPaths) -> bool:
    """Whether something accepts connections on the daemon's socket (a fresh connect)."""
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as probe:
        probe.settimeout(1.0)
        try:
            probe.connect(str(paths.socket))
        except OSError:
            return False
    return True


def _check(response: httpx.Response, paths: DaemonPaths) -> Any:
    if response.status_code < 400:
        return response.json()
    try:
        body = response.json()
        detail, code = str(body.get("detail")), str(body.get("code"))
    except (ValueError, AttributeError):
        detail, code = response.text.strip()[:500] or response.reason_phrase, ""
    if response.status_code == 401:
        raise DaemonRefused(f"the lsdctl daemon refused the request: {detail}")
    if response.status_code == 404 and code == "project_not_found":
        raise ProjectNotFound(detail)
    if response.status_code == 404 and code == "run_not_found":
        raise RunNotFound(detail)
    if response.status_code < 500:
        raise UsageError(detail)
    raise LsdctlError(f"the lsdctl daemon failed: {detail} (see {paths.log})")


def _dump(model: BaseModel) -> dict[str, Any]:
    return model.model_dump(mode="json", exclude_unset=True)


def _params(**values: Any) -> dict[str, Any]:
    return {k: v for k, v in values.items() if v is not None}


class DaemonClient:
    """Blocking client; one method per endpoint, answers as daemon.schemas models."""

    def __init__(self, home: Path | None = None, timeout: float = 30.0) -> None:
        self.paths = DaemonPaths.resolve(home)
        self.url = daemon_url()
        options = _http_options(self.paths, self.url, timeout)
        if self.url is None:
            options["transport"] = httpx.HTTPTransport(uds=str(self.paths.socket))
        self._http = httpx.Client(**options)

    def __enter__(self) -> DaemonClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        self._http.close()

    def _call(self, method: str, path: str, **kwargs: Any) -> Any:
        try:
            response = self._http.request(method, f"/v1{path}", **kwargs)
        except httpx.TransportError as exc:
            raise _transport_error(exc, self.paths, self.url) from exc
        return _check(response, self.paths)

    def health(self) -> Health:
        return Health.model_validate(self._call("GET", "/health"))

    def is_running(self) -> bool:
        try:
            self.health()
        except DaemonNotRunning:
            return False
        return True

    def gpus(self) -> GpuReport:
        return GpuReport.model_validate(self._call("GET", "/gpus"))

    def submit(self, request: RunCreate) -> RunInfo:
        return RunInfo.model_validate(self._call("POST", "/runs", json=_dump(request)))

    def runs(
        self,
        project: str | None = None,
        state: str | None = None,
        kind: str | None = None,
        limit: int = 50,
        offset: int = 0,
    ) -> list[RunInfo]:
        params = _params(project=project, state=state, kind=kind, limit=limit, offset=offset)
        return _RUN_LIST.validate_python(self._call("GET", "/runs", params=params))

    def run(self, run_id: str) -> RunDetail:
        return RunDetail.model_validate(self._call("GET", f"/runs/{_id(run_id)}"))

    def metrics(
        self, run_id: str, name: str | None = None, since_step: int | None = None
    ) -> Metrics:
        params = _params(name=name, since_step=since_step)
        return Metrics.model_validate(
            self._call("GET", f"/runs/{_id(run_id)}/metrics", params=params)
        )

    def validation(self, run_id: str) -> Validation:
        return Validation.model_validate(self._call("GET", f"/runs/{_id(run_id)}/validation"))

    def log(self, run_id: str, offset: int = 0) -> LogChunk:
        return LogChunk.model_validate(
            self._call("GET", f"/runs/{_id(run_id)}/log", params={"offset": offset})
        )

    def blocks(self, run_id: str, task: str | None = None) -> BlockMap:
        return BlockMap.model_validate(
            self._call("GET", f"/runs/{_id(run_id)}/blocks", params=_params(task=task))
        )

    def checkpoints(self, run_id: str) -> Checkpoints:
        return Checkpoints.model_validate(self._call("GET", f"/runs/{_id(run_id)}/checkpoints"))

    def cancel(self, run_id: str) -> RunInfo:
        return RunInfo.model_validate(self._call("POST", f"/runs/{_id(run_id)}/cancel"))

    def resume(self, run_id: str, iterations: int | None = None) -> RunInfo:
        body = _dump(ResumeRequest(iterations=iterations))
        return RunInfo.model_validate(self._call("POST", f"/runs/{_id(run_id)}/resume", json=body))

    def release(self, run_id: str) -> RunInfo:
        return RunInfo.model_validate(self._call("POST", f"/runs/{_id(run_id)}/release"))

    def shutdown(self) -> None:
        self._call("POST", "/shutdown")


class AsyncDaemonClient:
    """The same API for asyncio callers (the TUI's background workers)."""

    def __init__(self, home: Path | None = None, timeout: float = 30.0) -> None:
        self.paths = DaemonPaths.resolve(home)
        self.url = daemon_url()
        options = _http_options(self.paths, self.url, timeout)
        if self.url is None:
            options["transport"] = httpx.AsyncHTTPTransport(uds=str(self.paths.socket))
        self._http = httpx.AsyncClient(**options)

    async def aclose(self) -> None:
        await self._http.aclose()

    async def _call(self, method: str, path: str, **kwargs: Any) -> Any:
        try:
            response = await self._http.request(method, f"/v1{path}", **kwargs)
        except httpx.TransportError as exc:
            raise _transport_error(exc, self.paths, self.url) from exc
        return _check(response, self.paths)

    async def health(self) -> Health:
        return Health.model_validate(await self._call("GET", "/health"))

    async def gpus(self) -> GpuReport:
        return GpuReport.model_validate(await self._call("GET", "/gpus"))

    async def runs(
        self,
        project: str | None = None,
        state: str | None = None,
        kind: str | None = None,
        limit: int = 50,
        offset: int = 0,
    ) -> list[RunInfo]:
        params = _params(project=project, state=state, kind=kind, limit=limit, offset=offset)
        return _RUN_LIST.validate_python(await self._call("GET", "/runs", params=params))

    async def run(self, run_id: str) -> RunDetail:
        return RunDetail.model_validate(await self._call("GET", f"/runs/{_id(run_id)}"))

    async def metrics(
        self, run_id: str, name: str | None = None, since_step: int | None = None
    ) -> Metrics:
        params = _params(name=name, since_step=since_step)
        return Metrics.model_validate(
            await self._call("GET", f"/runs/{_id(run_id)}/metrics", params=params)
        )

    async def validation(self, run_id: str) -> Validation:
        return Validation.model_validate(await self._call("GET", f"/runs/{_id(run_id)}/validation"))

    async def log(self, run_id: str, offset: int = 0) -> LogChunk:
        return LogChunk.model_validate(
            await self._call("GET", f"/runs/{_id(run_id)}/log", params={"offset": offset})
        )

    async def blocks(self, run_id: str, task: str | None = None) -> BlockMap:
        return BlockMap.model_validate(
            await self._call("GET", f"/runs/{_id(run_id)}/blocks", params=_params(task=task))
        )

    async def checkpoints(self, run_id: str) -> Checkpoints:
        return Checkpoints.model_validate(
            await self._call("GET", f"/runs/{_id(run_id)}/checkpoints")
        )

    async def submit(self, request: RunCreate) -> RunInfo:
        return RunInfo.model_validate(await self._call("POST", "/runs", json=_dump(request)))

    async def release(self, run_id: str) -> RunInfo:
        return RunInfo.model_validate(await self._call("POST", f"/runs/{_id(run_id)}/release"))

    async def cancel(self, run_id: str) -> RunInfo:
        return RunInfo.model_validate(await self._call("POST", f"/runs/{_id(run_id)}/cancel"))

    async def resume(self, run_id: str, iterations: int | None = None) -> RunInfo:
        body = _dump(ResumeRequest(iterations=iterations))
        return RunInfo.model_validate(
            await self._call("POST", f"/runs/{_id(run_id)}/resume", json=body)
        )


def _id(run_id: str) -> str:
    # A run id is one path segment: refuse what would change the URL's path.
    if not run_id or "/" in run_id or run_id in (".", ".."):
        raise RunNotFound(f"no run {run_id!r}: `lsdctl runs` lists the runs")
    return run_id


def start_daemon(paths: DaemonPaths, args: Sequence[str] = ()) -> subprocess.Popen[bytes]:
    """`python -m daemon ARGS` detached: its own session, output appended to daemon.log."""
    paths.home.mkdir(mode=0o700, parents=True, exist_ok=True)
    env = dict(os.environ, LSDCTL_HOME=str(paths.home))
    with paths.log.open("ab") as log:
        return subprocess.Popen(
            [sys.executable, "-m", "daemon", *args],
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )


def ensure_daemon(
    home: Path | None = None, timeout: float = _START_TIMEOUT_S, args: Sequence[str] = ()
) -> DaemonClient:
    """A client of a running daemon, starting one (detached, with `args`) when none
    answers."""
    client = DaemonClient(home)
    if client.is_running():
        return client
    if client.url is not None:
        client.close()
        raise _tcp_error(httpx.ConnectError("nothing answers"), client.url)
    process = start_daemon(client.paths, args)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if client.is_running():
            return client
        code = process.poll()
        if code == 2:
            # Another lsdctl may have started one at the same moment: give it a little time.
            deadline = min(deadline, time.monotonic() + 2.0)
        elif code is not None:
            break
        time.sleep(0.1)
    client.close()
    raise DaemonNotRunning(
        f"the lsdctl daemon is not running and could not be started: see {client.paths.log}"
    )
