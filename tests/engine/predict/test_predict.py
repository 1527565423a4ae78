"""Blockwise prediction on real daisy workers: equality, crashes, resume, hashes."""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import sys
import threading
import time
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest
import zarr

from engine.blockwise.task import BLOCKS_DIR
from engine.contract import read_events
from engine.data.synth import synthesize
from engine.data.volume import write_volume
from engine.errors import InputError
from engine.models.registry import MODEL_TYPES
from engine.predict.plan import (
    AFFS,
    LSDS,
    TRACKING,
    VolumePlan,
    checkpoint_hash,
    network_config,
    plan_volumes,
    prepare_outputs,
    settings_hash,
)
from engine.predict.predictor import Predictor, predict_every_block, predict_in_process
from engine.project import config as cfg
from engine.project.layout import Project, init_project
from engine.runs.spec import Resources, RunSpec, read_spec, write_spec
from engine.train.trainer import main as train_main

ROOT = Path(__file__).resolve().parents[3]


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory) -> Project:
    """A tiny project with a 2-iteration checkpoint and two test volumes."""
    root = tmp_path_factory.mktemp("projects")
    project = init_project("p", "tiny", root=root)
    config = cfg.with_value(project.load_config(), "train.iterations", 2)
    config = cfg.with_value(config, "train.augment.enabled", False)
    config = cfg.with_value(config, "train.seed", 3)
    config = cfg.with_value(config, "train.validate_every", 0)
    project.save_config(config)
    for split, name, shape, seed in [
        ("train", "a.zarr", (50, 50, 50), 0),
        # 2x3x3 and 3x4x4 blocks of the tiny model's 28^3 output
        ("test", "small.zarr", (56, 84, 84), 1),
        ("test", "large.zarr", (84, 112, 112), 2),
    ]:
        raw, labels = synthesize(shape, config.data.voxel_size, seed=seed)
        write_volume(project.split_dir(split) / name, raw, labels, config.data.voxel_size)
    run_dir = project.runs_dir / "train"
    write_spec(run_dir, RunSpec(id="train", kind="train", project=str(project.path), config=config))
    assert train_main([str(run_dir)]) == 0
    return project


def _predict_run(
    project: Project,
    name: str,
    volumes: list[str],
    workers: int = 2,
    gpus: tuple[int, ...] = (),
    batch_size: int | None = None,
    **inputs: object,
) -> Path:
    checkpoint = sorted((project.runs_dir / "train" / "checkpoints").glob("*.pt"))[-1]
    run_dir = project.runs_dir / name
    config = project.load_config()
    if batch_size is not None:
        config = cfg.with_value(config, "predict.batch_size", batch_size)
    write_spec(
        run_dir,
        RunSpec(
            id=name,
            kind="predict",
            project=str(project.path),
            config=config,
            inputs={
                "checkpoint": str(checkpoint),
                "volumes": [str(project.split_dir("test") / v) for v in volumes],
                **inputs,
            },
            resources=Resources(workers=workers, gpus=list(gpus)),
        ),
    )
    return run_dir


def _start(run_dir: Path, *args: str) -> subprocess.Popen[bytes]:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    with (run_dir / "log.txt").open("ab") as log:
        return subprocess.Popen(
            [sys.executable, "-m", "engine.predict", str(run_dir), *args],
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            env=env,
        )


def _predict(run_dir: Path, *args: str) -> int:
    return _start(run_dir, *args).wait(timeout=300)


def _outputs(run_dir: Path, volume: str) -> dict[str, np.ndarray]:
    root = zarr.open_group(str(run_dir / "predictions" / volume), mode="r")
    return {name: root[name][:] for name in (AFFS, LSDS)}


def _reference(project: Project, volume: str) -> dict[str, np.ndarray]:
    """The same checkpoint, every block in one process (all cores' threads), one tile a
    batch (the runs compared with it use other batch sizes)."""
    run_dir = project.runs_dir / f"reference-{volume}"
    if not run_dir.exists():
        run_dir = _predict_run(project, run_dir.name, [volume], workers=1, batch_size=1)
        _prepared(run_dir)
        predict_in_process(run_dir)
    return _outputs(run_dir, volume)


def _prepared(run_dir: Path) -> list[VolumePlan]:
    """The volume plans of a predict run, their outputs created as the run would."""
    spec = read_spec(run_dir)
    config = network_config(spec)
    hashes = {
        "checkpoint_sha256": checkpoint_hash(Path(spec.inputs["checkpoint"])),
        "config_sha256": settings_hash(config),
    }
    plans = plan_volumes(spec, config, run_dir)
    for plan in plans:
        prepare_outputs(plan, config, hashes, overwrite=False)
    return plans


def _events(run_dir: Path, type_: str) -> list[dict[str, object]]:
    return [e for e in read_events(run_dir / "events.jsonl")[0] if e["type"] == type_]


def _blocks_done(run_dir: Path) -> int:
    return sum(1 for e in _events(run_dir, "block") if e["status"] == "done")


def _wait_for(condition: object, timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while not condition():  # type: ignore[operator]
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.05)


def _worker_pids(session: int) -> list[int]:
    """The daisy worker processes of a run (its session), from /proc."""
    pids = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            cmdline = (entry / "cmdline").read_bytes()
            if b"daisy._subprocess_worker" in cmdline and os.getsid(int(entry.name)) == session:
                pids.append(int(entry.name))
        except (OSError, ProcessLookupError):
            continue
    return pids


def test_two_workers_equal_one_process_bitwise(trained: Project) -> None:
    # Batches of 3 tiles in 2 workers of 1 thread against batches of 1 in one process
    # of 2 threads: the same bits. The large volume's 48 blocks, so that one worker
    # cannot take them all (9 in flight) before the other has started on a loaded machine.
    run_dir = _predict_run(trained, "two-workers", ["large.zarr"], batch_size=3)
    assert _predict(run_dir) == 0, (run_dir / "log.txt").read_text()[-3000:]
    got, want = _outputs(run_dir, "large.zarr"), _reference(trained, "large.zarr")
    for name in (AFFS, LSDS):
        assert got[name].dtype == np.uint8
        assert got[name].std() > 0  # a real prediction, not a constant
        np.testing.assert_array_equal(got[name], want[name])
    blocks = _events(run_dir, "block")
    workers = {e["worker"] for e in blocks if e["status"] == "done"}
    assert len(workers) == 2, "both workers served blocks"
    assert _blocks_done(run_dir) == 48
    (result,) = _events(run_dir, "result")
    assert result["computed"] == 48 and result["skipped"] == 0
    attrs = zarr.open_group(str(run_dir / "predictions" / "large.zarr"), mode="r").attrs
    assert attrs["source_volume"].endswith("large.zarr")
    array = zarr.open(str(run_dir / "predictions" / "large.zarr" / AFFS), mode="r")
    assert array.chunks == (3, 28, 28, 28)  # one chunk per write block
    assert list(array.attrs["voxel_size"]) == [8, 8, 8]
    # Each local worker's log says how it ran and where its time went.
    logs = [p.read_text() for p in sorted((run_dir / "workers").rglob("worker_*.err"))]
    assert len(logs) >= 2
    assert all("predicting on cpu in fp32, batches of 3 tiles" in t for t in logs)
    assert all(re.search(r"\d+ batches of up to 3 tiles in [\d.]+ s; the forward", t) for t in logs)


class _QueuedDevice:
    """The forward as a GPU runs it (the CPU cannot): `submit` queues a batch on a thread
    of its own, the device, and returns at once; `ready` and `result` as TileForward's
    batches on CUDA. Counts the batches submitted while another was still running."""

    def __init__(self, forward: object) -> None:
        self.forward = forward
        self.device = ThreadPoolExecutor(1)
        self.queued_behind = 0
        self._last: Future[object] | None = None
        self._lock = threading.Lock()

    def submit(self, tiles: list[np.ndarray]) -> object:
        copies = [np.array(t) for t in tiles]  # the caller may reuse its tiles
        with self._lock:
            if self._last is not None and not self._last.done():
                self.queued_behind += 1
            future = self.device.submit(lambda: self.forward(copies))  # type: ignore[operator]
            self._last = future

        class Pending:
            def ready(self) -> bool:
                return future.done()

            def result(self) -> object:
                return future.result()

        return Pending()


def test_a_worker_queuing_batches_on_an_asynchronous_device_gives_the_same_bits(
    trained: Project,
) -> None:
    # What a GPU worker does (the next batch queued behind the running one), with real
    # lanes, blocks and outputs: every tile's output as in one process, none lost.
    run_dir = _predict_run(trained, "queued", ["large.zarr"], workers=1, batch_size=3)
    (plan,) = _prepared(run_dir)
    worker = Predictor.from_run(run_dir, plan.task_id, device="cpu")
    device = _QueuedDevice(worker.forward)
    worker.batcher.forward = device  # type: ignore[assignment]
    predict_every_block(worker)
    device.device.shutdown()
    got, want = _outputs(run_dir, "large.zarr"), _reference(trained, "large.zarr")
    for name in (AFFS, LSDS):
        np.testing.assert_array_equal(got[name], want[name])
    assert worker.batcher.batches >= 16  # 48 blocks of one tile, 3 a batch
    assert device.queued_behind > 0, "no batch was ever queued behind a running one"


def test_a_killed_worker_is_replaced_and_the_output_is_unchanged(trained: Project) -> None:
    run_dir = _predict_run(trained, "kill-worker", ["large.zarr"])
    process = _start(run_dir)
    _wait_for(lambda: _blocks_done(run_dir) >= 4)
    victims = _worker_pids(process.pid)
    assert victims, "no worker process found"
    os.kill(victims[0], signal.SIGKILL)
    assert process.wait(timeout=300) == 0, (run_dir / "log.txt").read_text()[-3000:]
    np.testing.assert_array_equal(
        _outputs(run_dir, "large.zarr")[AFFS], _reference(trained, "large.zarr")[AFFS]
    )
    started = [e for e in _events(run_dir, "worker") if e["status"] == "started"]
    assert len(started) >= 3, "a replacement worker started"


def test_a_killed_run_resumes_with_only_the_unfinished_blocks(trained: Project) -> None:
    run_dir = _predict_run(trained, "kill-run", ["large.zarr"])
    process = _start(run_dir)
    _wait_for(lambda: _blocks_done(run_dir) >= 8)
    os.killpg(process.pid, signal.SIGKILL)
    process.wait()
    # Counted in the workers' own block files: the relay into events.jsonl may not have
    # caught up with them when the kill came.
    done_before = sum(
        json.loads(line)["status"] == "done"
        for path in (run_dir / BLOCKS_DIR).glob("*.jsonl")
        for line in path.read_text().splitlines()
    )
    total = 3 * 4 * 4
    assert 8 <= done_before < total
    assert _predict(run_dir) == 0, (run_dir / "log.txt").read_text()[-3000:]
    result = _events(run_dir, "result")[-1]
    # Blocks daisy had recorded as done are skipped, never one no worker had finished; a
    # block finished just before the kill but not yet recorded is computed again.
    assert 0 < result["skipped"] <= done_before
    assert result["computed"] == total - result["skipped"]
    np.testing.assert_array_equal(
        _outputs(run_dir, "large.zarr")[AFFS], _reference(trained, "large.zarr")[AFFS]
    )


def test_other_checkpoint_refused_unless_overwrite(trained: Project, tmp_path: Path) -> None:
    run_dir = _predict_run(trained, "hashes", ["small.zarr"], output_dir=str(tmp_path / "out"))
    assert _predict(run_dir) == 0
    again = _predict_run(trained, "hashes-2", ["small.zarr"], output_dir=str(tmp_path / "out"))
    assert _predict(again) == 0  # same checkpoint and settings: nothing to do
    assert _events(again, "result")[-1]["computed"] == 0
    other = tmp_path / "other.pt"
    other.write_bytes(Path(read_spec(run_dir).inputs["checkpoint"]).read_bytes() + b"different")
    changed = _predict_run(trained, "hashes-3", ["small.zarr"], output_dir=str(tmp_path / "out"))
    spec = read_spec(changed)
    spec_path = changed / "run.toml"
    spec_path.write_text(spec_path.read_text().replace(str(spec.inputs["checkpoint"]), str(other)))
    process = subprocess.run(
        [sys.executable, "-m", "engine.predict", str(changed)],
        capture_output=True,
        text=True,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
        timeout=120,
    )
    assert process.returncode == 2
    assert "another checkpoint" in process.stderr and "--overwrite" in process.stderr
    assert "Traceback" not in process.stderr


def test_tracking_lives_with_the_output(trained: Project) -> None:
    run_dir = trained.runs_dir / "two-workers"
    if not run_dir.exists():
        pytest.skip("needs test_two_workers_equal_one_process_bitwise")
    assert (run_dir / "predictions" / "large.zarr" / TRACKING).is_dir()


# Beside the checkout (../shared), or beside the folder of worktrees (../../shared).
SLURM = (
    next(
        (
            p
            for p in (ROOT.parent, ROOT.parent.parent)
            if (p / "shared/tools/slurm/start.sh").is_file()
        ),
        ROOT.parent,
    )
    / "shared"
    / "tools"
    / "slurm"
    / "start.sh"
)


@pytest.fixture(scope="session")
def slurm() -> None:
    """A real single-node Slurm cluster (../shared/tools/slurm), or a skip saying why not."""
    if not SLURM.is_file():
        pytest.skip(f"{SLURM} not found")
    if os.geteuid() != 0:
        pytest.skip("starting the test Slurm cluster needs root")
    if shutil.which("sbatch") is None or shutil.which("slurmctld") is None:
        pytest.skip(
            "Slurm is not installed: apt-get install -y --no-install-recommends slurmctld "
            "slurmd slurm-client munge"
        )
    started = subprocess.run(
        ["bash", str(SLURM)], capture_output=True, text=True, timeout=180, check=False
    )
    if started.returncode != 0 or "slurm ready" not in started.stdout:
        pytest.skip(f"the Slurm cluster did not start: {started.stderr.strip()[-300:]}")


@pytest.mark.slow
def test_slurm_workers_predict_the_same(trained: Project, slurm: None) -> None:
    run_dir = _predict_run(trained, "slurm", ["small.zarr"])
    spec_path = run_dir / "run.toml"
    # The test cluster has no GPUs: CPU jobs.
    text = spec_path.read_text().replace('executor = "local"', 'executor = "slurm"')
    spec_path.write_text(text.replace("cluster_gpu = true", "cluster_gpu = false"))
    assert not read_spec(run_dir).config.predict.cluster_gpu
    assert read_spec(run_dir).resources.executor == "slurm"
    assert _predict(run_dir) == 0, (run_dir / "log.txt").read_text()[-3000:]
    np.testing.assert_array_equal(
        _outputs(run_dir, "small.zarr")[AFFS], _reference(trained, "small.zarr")[AFFS]
    )
    logs = sorted((run_dir / "workers").glob("*.cluster-*.log"))
    assert len(logs) == 2, "one Slurm job per worker"
    hosts = {e.get("worker") for e in _events(run_dir, "block") if e["status"] == "done"}
    assert hosts, "blocks were served by the Slurm jobs"


@pytest.mark.slow
def test_every_model_type_predicts(tmp_path: Path) -> None:
    """Every registered type but MTLSD, in process (the blockwise path is the same as
    MTLSD's, tested above): each writes exactly the arrays it declares, of the volume's
    shape."""
    raw, labels = synthesize((40, 40, 40), [8, 8, 8], seed=0)
    for model_type in [name for name in MODEL_TYPES if name != "MTLSD"]:
        project = init_project(model_type.lower(), "tiny", root=tmp_path)
        config = cfg.from_preset(
            "tiny",
            {
                "train": {
                    "model_type": model_type,
                    "iterations": 2,
                    "validate_every": 0,
                    "lsd_iterations": 1,
                    "augment": {"enabled": False},
                },
                "system": {"num_workers": 0},
            },
        )
        project.save_config(config)
        write_volume(project.split_dir("train") / "a.zarr", raw, labels, config.data.voxel_size)
        write_volume(project.split_dir("test") / "t.zarr", raw, labels, config.data.voxel_size)
        train = project.runs_dir / "train"
        spec = RunSpec(id="train", kind="train", project=str(project.path), config=config)
        write_spec(train, spec)
        assert train_main([str(train)]) == 0
        run_dir = _predict_run(project, "predict", ["t.zarr"], workers=1)
        _prepared(run_dir)
        predict_in_process(run_dir)
        root = zarr.open_group(str(run_dir / "predictions" / "t.zarr"), mode="r")
        expected = set(MODEL_TYPES[model_type].predicts)
        assert expected <= {LSDS, AFFS}, model_type
        assert set(root.array_keys()) == expected, model_type
        for name in expected:
            data = root[name][:]
            assert data.shape == ((10 if name == LSDS else 3), 40, 40, 40)
            assert data.std() > 0, (model_type, name)


def test_workers_get_their_gpu_and_the_scheduler_never_imports_torch(trained: Project) -> None:
    # Reserved GPUs 3 and 5: worker i gets GPU i mod 2 (torch here is a CPU build, so the
    # prediction itself runs on the CPU either way).
    run_dir = _predict_run(trained, "gpus", ["small.zarr"], gpus=(3, 5))
    probe = (
        "import sys, engine.predict.launch as p; code = p.main([sys.argv[1]]); "
        "print('torch' in sys.modules, code)"
    )
    done = subprocess.run(
        [sys.executable, "-c", probe, str(run_dir)],
        capture_output=True,
        text=True,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
        timeout=300,
    )
    assert done.stdout.split()[-2:] == ["False", "0"], done.stderr[-3000:]
    started = [e for e in _events(run_dir, "worker") if e["status"] == "started"]
    assert {(e["worker"], e["gpu"]) for e in started} == {(0, "3"), (1, "5")}


def test_a_block_that_keeps_failing_stops_the_run_with_its_traceback(
    trained: Project, tmp_path: Path
) -> None:
    # A volume whose raw has one corrupt chunk: the blocks reading it fail every time.
    source = trained.split_dir("test") / "small.zarr"
    broken = trained.split_dir("test") / "broken.zarr"
    shutil.copytree(source, broken)
    chunk = next(p for p in (broken / "raw").rglob("*") if p.is_file() and p.name == "0")
    chunk.write_bytes(b"not a blosc chunk")
    try:
        run_dir = _predict_run(trained, "broken", ["broken.zarr"])
        spec_path = run_dir / "run.toml"
        spec_path.write_text(spec_path.read_text().replace("retries = 2", "retries = 1"))
        start = time.monotonic()
        assert _predict(run_dir) == 1
        assert time.monotonic() - start < 120  # no endless respawning
        (error,) = _events(run_dir, "error")
        message = str(error["message"])
        assert "failed 2 times" in message and "Traceback" in message
        failed = [e for e in _events(run_dir, "block") if e["status"] == "failed"]
        assert failed and all("Traceback" in str(e["error"]) for e in failed)
        # Each block was tried twice (retries = 1), never more.
        tries: dict[object, int] = {}
        for event in failed:
            tries[event["id"]] = tries.get(event["id"], 0) + 1
        assert max(tries.values()) == 2
    finally:
        shutil.rmtree(broken)


@pytest.mark.slow
def test_sigterm_stops_the_run_at_once_and_it_resumes(trained: Project) -> None:
    run_dir = _predict_run(trained, "sigterm", ["large.zarr"])
    process = _start(run_dir)
    _wait_for(lambda: _blocks_done(run_dir) >= 3)
    process.send_signal(signal.SIGTERM)
    start = time.monotonic()
    assert process.wait(timeout=60) == 3  # interrupted, resumable
    assert time.monotonic() - start < 15, "the run finished its blocks instead of stopping"
    # A worker daisy started while the others ended exits at once on its own.
    _wait_for(lambda: not [p for p in _worker_pids(process.pid) if _running(p)], timeout=10)
    assert _events(run_dir, "interrupted")
    assert _predict(run_dir) == 0
    np.testing.assert_array_equal(
        _outputs(run_dir, "large.zarr")[AFFS], _reference(trained, "large.zarr")[AFFS]
    )


def _running(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state not in ("Z", "X")


@pytest.mark.slow
def test_a_region_with_a_mask_predicts_the_crop_and_skips_empty_blocks(trained: Project) -> None:
    """--roi on block boundaries gives the full run's values there; blocks of the region
    without a masked voxel are skipped (events say so, their output stays 0); the region
    and the mask are part of the resume hash."""
    from engine.data import ome
    from engine.data.volume import create_array

    volume = trained.split_dir("test") / "small.zarr"  # 56x84x84 voxels: 2x3x3 blocks
    tissue = np.zeros((56, 84, 84), np.uint8)
    tissue[28:40, 28:56, 0:28] = 1  # region block (0, 0, 0)
    tissue[50, 60, 30] = 1  # one voxel in region block (0, 1, 1)
    create_array(volume, "tissue", tissue.shape, np.uint8, (8, 8, 8), (0, 0, 0))[:] = tissue
    run_dir = _predict_run(
        trained, "roi-mask", ["small.zarr"], roi="28:56,28:84,0:56vx", mask="tissue"
    )
    assert _predict(run_dir) == 0, (run_dir / "log.txt").read_text()[-3000:]
    got = _outputs(run_dir, "small.zarr")
    reference = _reference(trained, "small.zarr")
    region = (slice(None), slice(28, 56), slice(28, 84), slice(0, 56))
    done = [
        (slice(0, 28), slice(0, 28), slice(0, 28)),
        (slice(0, 28), slice(28, 56), slice(28, 56)),
    ]
    skipped = [
        (slice(0, 28), slice(0, 28), slice(28, 56)),
        (slice(0, 28), slice(28, 56), slice(0, 28)),
    ]
    for name in (AFFS, LSDS):
        assert got[name].shape == (reference[name].shape[0], 28, 56, 56)
        cropped = reference[name][region]
        for block in done:
            assert np.array_equal(got[name][(slice(None), *block)], cropped[(slice(None), *block)])
        for block in skipped:
            assert not got[name][(slice(None), *block)].any()
    # The output sits at the region's offset, for funlib and for OME-NGFF viewers.
    output = run_dir / "predictions" / "small.zarr"
    assert zarr.open(str(output / AFFS)).attrs["offset"] == [224, 224, 0]
    entry = ome.entry(output, AFFS)
    assert entry is not None and ome.scale_and_translation(entry)[1][-3:] == [224, 224, 0]
    blocks = _events(run_dir, "block")
    assert sum(e["status"] == "skipped" for e in blocks) == 2
    assert sum(e["status"] == "done" for e in blocks) == 2
    (result,) = _events(run_dir, "result")
    assert result["masked_out"] == 2 and result["computed"] == 2 and result["blocks"] == 4
    # Resuming with the same region and mask does nothing; another mask is refused.
    assert _predict(run_dir) == 0
    assert len(_events(run_dir, "block")) == len(blocks)
    tissue[0, 0, 0] = 1
    zarr.open(str(volume / "tissue"), mode="r+")[:] = tissue
    assert _predict(run_dir) == 2
    assert "another region" in (run_dir / "log.txt").read_text()


def test_one_worker_asked_for_is_one_worker(trained: Project) -> None:
    # predict.num_workers is a default the resolver applies, not a floor: `--workers 1`
    # used to become predict.num_workers inside engine.predict.launch.
    spec = read_spec(_predict_run(trained, "one-worker-draft", ["small.zarr"], workers=1))
    run_dir = trained.runs_dir / "one-worker"
    config = cfg.with_value(spec.config, "predict.num_workers", 3)
    write_spec(run_dir, spec.model_copy(update={"id": "one-worker", "config": config}))
    assert _predict(run_dir) == 0, (run_dir / "log.txt").read_text()[-3000:]
    started = [e for e in _events(run_dir, "worker") if e["status"] == "started"]
    assert [e["worker"] for e in started] == [0]


def test_a_larger_predict_input_gives_the_same_values(trained: Project) -> None:
    # The network is fully convolutional: 52^3 inputs (36^3 outputs, blocks of 36^3)
    # predict what 44^3 inputs (28^3 outputs) do, up to the float summation order of the
    # larger convolutions.
    spec = read_spec(_predict_run(trained, "wide-draft", ["small.zarr"], workers=1))
    config = cfg.with_value(spec.config, "predict.input_shape", [52, 52, 52])
    assert config.predict_shapes() == ([52, 52, 52], [36, 36, 36])
    assert config.block_shape() == [36, 36, 36] and config.context() == [8, 8, 8]
    run_dir = trained.runs_dir / "wide"
    write_spec(run_dir, spec.model_copy(update={"id": "wide", "config": config}))
    assert _predict(run_dir) == 0, (run_dir / "log.txt").read_text()[-3000:]
    wide, reference = _outputs(run_dir, "small.zarr"), _reference(trained, "small.zarr")
    for name in (AFFS, LSDS):
        diff = np.abs(wide[name].astype(np.int16) - reference[name].astype(np.int16))
        assert wide[name].shape == reference[name].shape
        assert diff.max() <= 1 and (diff == 0).mean() > 0.999, name


def test_a_predict_input_that_does_not_fit_the_unet_names_valid_ones(trained: Project) -> None:
    with pytest.raises(InputError, match=r"predict.input_shape \[50, 50, 51\] does not fit"):
        cfg.with_value(trained.load_config(), "predict.input_shape", [50, 50, 51])
