"""GPUs: the real no-GPU path (no NVIDIA library here) and reservation on two fake GPUs."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from daemon.schemas import RunState
from tests.conftest import CliCaller
from tests.daemon.conftest import Daemon, DaemonMaker, submit

NO_GPU = "none found (NVIDIA driver library not loaded)"
# Long enough to still be running while the test looks at it; every run is cancelled.
LONG = {"overrides": {"train.iterations": 100000}}
# No checkpoint is wanted from these runs: cancelled ones may be killed soon.
_GRACE = "1"


def _visible_devices(pid: int) -> str | None:
    for item in Path(f"/proc/{pid}/environ").read_bytes().split(b"\0"):
        if item.startswith(b"CUDA_VISIBLE_DEVICES="):
            return item.split(b"=", 1)[1].decode()
    return None


def _running(daemon: Daemon, run_id: str) -> tuple[list[int], str | None]:
    run = daemon.wait_state(run_id, RunState.RUNNING)
    assert run.pid is not None
    return run.gpus, _visible_devices(run.pid)


def _cancel(daemon: Daemon, *run_ids: str) -> None:
    with daemon.client() as client:
        for run_id in run_ids:
            client.cancel(run_id)
    for run_id in run_ids:
        daemon.wait_state(run_id, RunState.CANCELLED, timeout=30)


@pytest.mark.slow
def test_without_gpus_runs_use_the_cpu_and_gpu_only_runs_wait(
    make_daemon: DaemonMaker, cli: CliCaller, monkeypatch: pytest.MonkeyPatch
) -> None:
    daemon = make_daemon(LSDCTL_CANCEL_GRACE_S=_GRACE)
    monkeypatch.setenv("LSDCTL_HOME", str(daemon.home))
    with daemon.client() as client:
        report = client.gpus()
    assert report.available is False and report.reason == NO_GPU and report.gpus == []
    assert json.loads(cli.ok("gpus", "--json").stdout)["reason"] == NO_GPU
    assert cli.ok("gpus").stdout.strip() == f"no GPU: {NO_GPU}; runs use the CPU"

    waiting = submit(daemon, gpus=1, require_gpu=True, **LONG)
    cpu = submit(daemon, gpus=1, **LONG)
    assert _running(daemon, cpu) == ([], "")
    run = daemon.wait(waiting, lambda r: r.reason != "queued")
    assert run.state == RunState.QUEUED
    assert run.reason == f"waiting for a GPU: {NO_GPU}"
    assert f"waiting for a GPU: {NO_GPU}" in cli.ok("runs").stdout

    # One run on the CPU at a time; the queue goes by priority, then first come.
    low = submit(daemon, **LONG)
    high = submit(daemon, priority=5, hold=True, **LONG)
    slot = "waiting for a CPU slot: 1 run(s) on the CPU already (LSDCTL_MAX_CPU_RUNS)"
    assert daemon.wait(low, lambda r: r.reason != "queued").reason == slot
    assert (
        daemon.wait(high, lambda r: True).reason
        == f"held: `lsdctl run release {high}` lets it start"
    )
    cli.ok("run", "release", high)
    assert daemon.wait(high, lambda r: r.reason not in ("queued", None)).reason == slot
    _cancel(daemon, cpu)
    assert _running(daemon, high)[0] == []
    assert daemon.wait(low, lambda r: True).state == RunState.QUEUED
    _cancel(daemon, high, low, waiting)


@pytest.mark.slow
def test_gpus_are_reserved_never_double_booked_and_shared_when_asked(
    make_daemon: DaemonMaker,
) -> None:
    daemon = make_daemon(fake_gpus=2, LSDCTL_CANCEL_GRACE_S=_GRACE)
    with daemon.client() as client:
        report = client.gpus()
    assert report.available and [g.index for g in report.gpus] == [0, 1]
    assert report.gpus[1].name == "Fake GPU 80GB" and report.gpus[1].memory_used_mb == 2048

    a = submit(daemon, gpus=2, **LONG)
    assert _running(daemon, a) == ([0, 1], "0,1")
    c = submit(daemon, gpus=1, **LONG)
    run = daemon.wait(c, lambda r: r.reason != "queued")
    assert run.state == RunState.QUEUED
    assert run.reason == f"waiting for a GPU: all 2 in use (by {a})"
    with daemon.client() as client:
        assert [g.held_by for g in client.gpus().gpus] == [[a], [a]]
    _cancel(daemon, a)  # its GPUs go to the run that waited, and one stays free
    assert _running(daemon, c) == ([0], "0")

    # Sharing: only between runs that all allow it (c, on GPU 0, does not).
    s1 = submit(daemon, gpus=1, share_gpu=True, **LONG)
    assert _running(daemon, s1) == ([1], "1")
    s2 = submit(daemon, gpus=1, share_gpu=True, **LONG)
    assert _running(daemon, s2) == ([1], "1")
    exclusive = submit(daemon, gpus=1, **LONG)
    run = daemon.wait(exclusive, lambda r: r.reason != "queued")
    assert run.state == RunState.QUEUED and run.reason.startswith("waiting for a GPU: all 2")
    with daemon.client() as client:
        assert [sorted(g.held_by) for g in client.gpus().gpus] == [[c], sorted([s1, s2])]
    _cancel(daemon, c, s1, s2, exclusive)
