"""The worker side of a blockwise task: connect to daisy's scheduler, load the block
processor once, serve blocks (in lanes) until none are left, and write each block's
events to a file of its own in RUN_DIR/blocks/ (the scheduler relays them).
`main` is a cluster job's worker: `python -m engine.blockwise RUN_DIR TASK_ID TARGET`.
daisy is imported inside the functions: the scheduler imports this module too."""

from __future__ import annotations

import importlib
import json
import logging
import os
import sys
import threading
import time
import traceback
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from engine.blockwise.task import BLOCKS_DIR, SKIPPED, BlockProcessor, safe_name

logger = logging.getLogger(__name__)


def _import_target(target: str) -> Any:
    module, _, name = target.partition(":")
    return getattr(importlib.import_module(module), name)


class _BlockLog:
    """One worker's block events, one JSON object a line, in a file only it writes."""

    def __init__(self, run_dir: Path, task_id: str, worker: int) -> None:
        folder = run_dir / BLOCKS_DIR
        folder.mkdir(parents=True, exist_ok=True)
        name = f"{safe_name(task_id)}.w{worker}.{os.uname().nodename}.{os.getpid()}.jsonl"
        self._file = (folder / name).open("a", buffering=1)
        self.worker = worker
        self._lock = threading.Lock()  # lanes write too

    def write(self, **event: Any) -> None:
        event = {"t": round(time.time(), 3), "worker": self.worker, **event}
        with self._lock:
            self._file.write(json.dumps(event) + "\n")
            self._file.flush()


def serve(run_dir: Path, task_id: str, target: str) -> None:
    """Connect to daisy's scheduler (DAISY_CONTEXT) and process blocks until none are left."""
    import daisy.v2 as daisy

    # Local workers too: the process daisy started for the slot writes its stderr to
    # RUN_DIR/workers/TASK/worker_N.err, and without a handler INFO lines are dropped.
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    client = daisy.Client()
    log = _BlockLog(run_dir, task_id, client.worker_id)
    log.write(
        type="worker",
        status="started",
        task=task_id,
        host=os.uname().nodename,
        gpu=os.environ.get("CUDA_VISIBLE_DEVICES") or None,
    )
    process: BlockProcessor = _import_target(target)(run_dir, task_id)
    lanes = max(1, int(getattr(process, "lanes", 1)))
    served = [0] * lanes
    errors: list[BaseException] = []

    def lane(i: int) -> None:
        try:
            served[i] = _serve_lane(daisy.Client(), process, log, task_id)
        except BaseException as exc:  # re-raised in the worker's main thread
            errors.append(exc)

    threads = [threading.Thread(target=lane, args=(i,), name=f"lane-{i}") for i in range(1, lanes)]
    try:
        for thread in threads:
            thread.start()
        served[0] = _serve_lane(client, process, log, task_id)  # lane 0: this thread's client
        for thread in threads:
            thread.join()
        if errors:
            raise errors[0]
    finally:
        close = getattr(process, "close", None)
        if close is not None:
            close()
    log.write(type="worker", status="finished", task=task_id, blocks=sum(served))


def _serve_lane(client: Any, process: BlockProcessor, log: _BlockLog, task_id: str) -> int:
    """Blocks from `client`, one at a time, until none are left; how many were done."""
    import daisy.v2 as daisy

    served = 0
    while True:
        with client.acquire_block() as block:
            if block is None:
                return served
            offset = tuple(int(v) for v in block.write_roi.offset)
            log.write(type="block", task=task_id, offset=offset, status="running")
            start = time.monotonic()
            try:
                result = process(block)
            except Exception:
                # Caught here, not in daisy: a raising block would otherwise end the
                # worker, and with it the loaded model. daisy retries the block.
                block.status = daisy.BlockStatus.FAILED
                error = traceback.format_exc()
                logger.error("block at %s failed:\n%s", offset, error)
                log.write(type="block", task=task_id, offset=offset, status="failed", error=error)
                continue
            served += 1
            log.write(
                type="block",
                task=task_id,
                offset=offset,
                status=SKIPPED if result == SKIPPED else "done",
                seconds=round(time.monotonic() - start, 3),
            )


def main(argv: Sequence[str] | None = None) -> int:
    """`python -m engine.blockwise RUN_DIR TASK_ID TARGET`: a cluster job's worker."""
    args = list(sys.argv[1:] if argv is None else argv)
    if len(args) != 3:
        sys.stderr.write("usage: python -m engine.blockwise RUN_DIR TASK_ID MODULE:FACTORY\n")
        return 2
    serve(Path(args[0]), args[1], args[2])
    return 0
