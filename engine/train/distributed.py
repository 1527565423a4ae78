"""Data-parallel training: the ranks of one training run and how they agree.

A run given N GPUs trains with torch DistributedDataParallel in N processes. The process
the launcher started (`python -m engine.train RUN_DIR`) is rank 0: it hosts the
rendezvous store, starts ranks 1..N-1 as `python -m engine.train RUN_DIR --rank R ...`
in its own process group (a cancel that kills the group kills them all), writes every
event and checkpoint, and exits with the run's exit code once the others have ended.

No orphan ranks: a rank dies with rank 0 (PR_SET_PDEATHSIG on Linux, and a thread
watching the parent pid everywhere), and rank 0 exits, failing the run, as soon as a
rank dies before training ends (a collective would otherwise wait on it forever).

Stopping together: DDP needs every rank in every collective, so a SIGTERM that reaches
one rank (the launcher signals rank 0 only) must stop them all at the same iteration.
`Ranks.agree(flag)` all-reduces a local wish to stop before every iteration (on the CPU,
through a gloo group of its own, so that no rank waits for its GPU to vote).

`LSDCTL_CPU_RANKS=N` (testing only) trains N ranks on the CPU with gloo, so that all
of this runs on a machine without GPUs.
"""

from __future__ import annotations

import ctypes
import logging
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path
from typing import Any

import torch
import torch.distributed as dist

from engine.errors import InputError

logger = logging.getLogger(__name__)

CPU_RANKS_ENV = "LSDCTL_CPU_RANKS"
# Rank 0 validates while the others wait in the next collective: that can take many
# minutes on large val/ volumes. A dead rank is caught by the watchdog, not by this.
_COLLECTIVE_TIMEOUT = timedelta(hours=2)
# Ranks start in seconds (imports, model, pipeline); a machine under load is slower.
_JOIN_TIMEOUT = timedelta(minutes=10)
_WATCH_S = 0.5
# After rank 0's own end, how long the others may take to end theirs.
_END_TIMEOUT_S = 120.0
_PR_SET_PDEATHSIG = 1


def world_size(spec_gpus: list[int], config_gpus: list[int]) -> int:
    """How many ranks a run trains with: one per GPU it was given (the daemon's
    reservation, else system.gpus when run by hand) when torch sees that many, or
    LSDCTL_CPU_RANKS on the CPU; 1 otherwise."""
    if torch.cuda.is_available():
        wanted = len(spec_gpus) or len(config_gpus) or 1
        visible = torch.cuda.device_count()
        if wanted > visible:
            raise InputError(
                f"the run was given {wanted} GPUs but torch sees {visible}: check "
                "CUDA_VISIBLE_DEVICES or system.gpus"
            )
        return wanted
    text = os.environ.get(CPU_RANKS_ENV, "1")
    try:
        ranks = int(text)
    except ValueError:
        ranks = 0
    if ranks < 1:
        raise InputError(f"{CPU_RANKS_ENV} must be a positive whole number, got {text!r}")
    return ranks


class Ranks:
    """This process's place among the ranks of a run (rank 0 of 1 when not parallel)."""

    def __init__(self, rank: int = 0, world: int = 1) -> None:
        self.rank = rank
        self.world = world
        self._children: list[subprocess.Popen[bytes]] = []
        self._training = False
        self._on_death: Callable[[str], None] | None = None
        self._control: Any = None

    @property
    def parallel(self) -> bool:
        return self.world > 1

    @property
    def leader(self) -> bool:
        return self.rank == 0

    # ---- starting ---------------------------------------------------------------------
    @classmethod
    def launch(
        cls,
        run_dir: Path,
        world: int,
        extra_args: list[str],
        cuda: bool,
        on_death: Callable[[str], None],
    ) -> Ranks:
        """Rank 0: host the store, start ranks 1..world-1, join the group. From then
        until `finish`, a thread calls `on_death(message)` if another rank ends with a
        failure (it must end this process: the group cannot go on)."""
        ranks = cls(0, world)
        if world == 1:
            return ranks
        store = dist.TCPStore(
            "127.0.0.1", 0, world, is_master=True, timeout=_JOIN_TIMEOUT, wait_for_workers=False
        )
        for rank in range(1, world):
            command = [
                sys.executable,
                "-m",
                "engine.train",
                str(run_dir),
                *extra_args,
                "--rank",
                str(rank),
                "--world-size",
                str(world),
                "--store-port",
                str(store.port),
                "--parent",
                str(os.getpid()),
            ]
            # stdout and stderr are rank 0's: the run's log.txt.
            ranks._children.append(subprocess.Popen(command))
        ranks._watch_from_now(on_death)
        ranks._join(store, cuda)
        return ranks

    @classmethod
    def join(cls, rank: int, world: int, port: int, parent: int, cuda: bool) -> Ranks:
        """Ranks 1..world-1: die with rank 0, join its group."""
        _die_with(parent)
        store = dist.TCPStore("127.0.0.1", port, world, is_master=False, timeout=_JOIN_TIMEOUT)
        ranks = cls(rank, world)
        ranks._join(store, cuda)
        return ranks

    def _join(self, store: Any, cuda: bool) -> None:
        dist.init_process_group(
            "nccl" if cuda else "gloo",
            store=store,
            rank=self.rank,
            world_size=self.world,
            timeout=_COLLECTIVE_TIMEOUT,
        )
        # The stop votes go through a gloo group of their own, on the CPU: a vote on the
        # GPUs would be read back every iteration, which waits for the device's queue
        # to run dry (as reading each loss at once did: 4.68 instead of 5.23 it/s on an
        # H200). Every rank creates it, in the same order.
        self._control = dist.new_group(backend="gloo", timeout=_COLLECTIVE_TIMEOUT)
        logger.info("rank %d of %d joined", self.rank, self.world)

    # ---- while training ---------------------------------------------------------------
    def _watch_from_now(self, on_death: Callable[[str], None]) -> None:
        self._training = True
        self._on_death = on_death
        threading.Thread(target=self._watch, name="rank-watchdog", daemon=True).start()

    def _watch(self) -> None:
        while self._training:
            for rank, child in enumerate(self._children, start=1):
                code = child.poll()
                # 0 and 3 come only after all ranks agreed to end (`agree`, the last
                # iteration), while rank 0 is on its way to `finish`.
                failed = code is not None and code not in (0, 3)
                if failed and self._training and self._on_death is not None:
                    self._on_death(f"rank {rank} of {self.world} ended with exit code {code}")
                    return
            time.sleep(_WATCH_S)

    def agree(self, wish: bool) -> bool:
        """True on every rank if any rank wishes to stop (a collective: all must call)."""
        if not self.parallel:
            return wish
        flag = torch.tensor([1.0 if wish else 0.0])
        dist.all_reduce(flag, group=self._control)
        return bool(flag.item() > 0)

    def mean(self, value: torch.Tensor) -> torch.Tensor:
        """The mean of a scalar tensor over the ranks (a collective: all must call)."""
        if not self.parallel:
            return value
        total = value.detach().clone()
        dist.all_reduce(total)
        return total / self.world

    # ---- ending -------------------------------------------------------------------------
    def finish(self, code: int) -> int:
        """Leave the group; rank 0 waits for the others. The run's exit code: `code`,
        or 1 (failed) if another rank failed."""
        self._training = False
        if not self.parallel:
            return code
        try:
            dist.destroy_process_group()
        except Exception:  # a broken group is already reported by whoever broke it
            logger.debug("destroying the process group failed", exc_info=True)
        worst = code
        deadline = time.monotonic() + _END_TIMEOUT_S
        for rank, child in enumerate(self._children, start=1):
            try:
                other = child.wait(timeout=max(deadline - time.monotonic(), 0.1))
            except subprocess.TimeoutExpired:
                logger.error("rank %d did not end within %.0f s: killed", rank, _END_TIMEOUT_S)
                child.kill()
                child.wait()
                other = 1
            if other not in (0, 3) and worst in (0, 3):
                logger.error("rank %d ended with exit code %d", rank, other)
                worst = 1
        return worst

    def kill_others(self) -> None:
        """Rank 0, on a failure of its own: end the other ranks now."""
        self._training = False
        for child in self._children:
            if child.poll() is None:
                child.kill()
        for child in self._children:
            child.wait()


def _die_with(parent: int) -> None:
    """End this process when `parent` ends: at once on Linux (the kernel sends SIGKILL),
    within a poll elsewhere, and now if it is already gone."""
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
    except (OSError, AttributeError):
        logger.debug("no prctl: a thread watches rank 0 instead")

    def watch() -> None:
        while os.getppid() == parent:
            time.sleep(_WATCH_S)
        os._exit(1)

    if os.getppid() != parent:
        os._exit(1)
    threading.Thread(target=watch, name="parent-watchdog", daemon=True).start()
