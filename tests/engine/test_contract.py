"""engine.contract: the run directory's names, events, run ids and checkpoint names."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from pydantic import ValidationError

from engine import contract
from engine.contract import (
    BlockEvent,
    BlockGridEvent,
    CheckpointEvent,
    ErrorEvent,
    EventWriter,
    InitializedEvent,
    InterruptedEvent,
    MetricEvent,
    ProgressEvent,
    ResultEvent,
    ResumedEvent,
    SnapshotEvent,
    ValidationEvent,
    WarningEvent,
    WorkerEvent,
    parse_event,
    read_events,
    read_events_of,
)

ROOT = Path(__file__).parents[2]

# One event of every type, with the fields its writers in the engine give it.
EXAMPLES = [
    MetricEvent(step=10, name="loss", value=0.25),
    MetricEvent(step=11, name="loss", value=None),
    ProgressEvent(done=10, total=100),
    ProgressEvent(task="predict", done=3, total=8, failed=1),
    BlockEvent(
        id="predict:4", task="predict", grid=[0, 1, 0], status="done", worker=2, seconds=1.5
    ),
    BlockEvent(id="segment:0", status="failed", worker=None, error="Traceback …"),
    BlockGridEvent(
        task="predict", shape=[1, 2, 2], total=4, block=[40, 400, 400], offset=[0, 0, 0]
    ),
    WorkerEvent(task="predict", worker=1, status="started", host="node1", gpu=0),
    CheckpointEvent(iteration=1000, path="/r/checkpoints/checkpoint_00001000.pt", best=True),
    ValidationEvent(
        step=1000,
        voi_split=0.5,
        voi_merge=0.25,
        voi=0.75,
        arand=0.1,
        threshold=0.5,
        volumes={"val_a": {"voi": 0.75, "voxels": 1000}},
        seconds=3.25,
        best=True,
    ),
    ResultEvent(iterations=100, final_loss=0.125, checkpoint="/r/c.pt", best=None),
    ErrorEvent(message="ValueError: bad"),
    InterruptedEvent(message="stopped by a signal; resumable"),
    WarningEvent(message="tensorboard is not installed"),
    ResumedEvent(iteration=500, path="/r/checkpoints/checkpoint_00000500.pt"),
    InitializedEvent(path="/old/checkpoint_00300000.pt", iteration=300000),
    SnapshotEvent(iteration=100, path="/r/snapshots/iteration_00000100.zarr"),
]


def test_every_event_type_has_an_example() -> None:
    assert {e.type for e in EXAMPLES} == contract.EVENT_TYPES


@pytest.mark.parametrize("durable", [False, True])
def test_every_event_round_trips_through_writer_and_reader(tmp_path: Path, durable: bool) -> None:
    path = tmp_path / contract.EVENTS_FILE
    writer = EventWriter(path)
    for event in EXAMPLES:
        writer.write(event, durable=durable)
    writer.close()
    raw, offset = read_events(path)
    assert offset == path.stat().st_size
    assert len(raw) == len(EXAMPLES)
    for line, event in zip(raw, EXAMPLES, strict=True):
        assert isinstance(line["t"], float)
        parsed = parse_event(line)
        assert type(parsed) is type(event)
        assert parsed is not None
        assert parsed.model_dump(exclude={"t"}) == event.model_dump(exclude={"t"})


def test_emit_writes_what_the_models_read(tmp_path: Path) -> None:
    # The engine's writers call emit with keywords; the models read those lines.
    path = tmp_path / contract.EVENTS_FILE
    writer = EventWriter(path)
    writer.metric(5, "loss", float("nan"))
    writer.emit("checkpoint", durable=True, iteration=5, path="c.pt", best=False)
    writer.emit("result", durable=True, iterations=5, outputs=["a.zarr"])
    writer.close()
    metric, checkpoint, result = (parse_event(e) for e in read_events(path)[0])
    assert isinstance(metric, MetricEvent) and metric.value is None and metric.step == 5
    assert isinstance(checkpoint, CheckpointEvent) and checkpoint.iteration == 5
    assert isinstance(result, ResultEvent) and result.model_extra == {
        "iterations": 5,
        "outputs": ["a.zarr"],
    }


def test_a_given_time_is_kept(tmp_path: Path) -> None:
    path = tmp_path / contract.EVENTS_FILE
    writer = EventWriter(path)
    writer.write(ErrorEvent(t=12.5, message="m"))
    writer.close()
    assert read_events(path)[0] == [{"t": 12.5, "type": "error", "message": "m"}]


def test_unknown_event_types_are_passed_over() -> None:
    assert parse_event({"t": 1.0, "type": "telemetry", "gpu_temp": 71}) is None
    assert parse_event({"t": 1.0}) is None


def test_unknown_fields_of_a_known_type_are_kept() -> None:
    event = parse_event({"type": "progress", "done": 1, "total": 2, "eta_s": 30.0})
    assert isinstance(event, ProgressEvent) and event.model_extra == {"eta_s": 30.0}


def test_a_malformed_known_event_is_an_error_for_the_reader_to_skip() -> None:
    with pytest.raises(ValidationError):
        parse_event({"type": "metric", "step": "ten", "name": "loss", "value": 1.0})
    with pytest.raises(ValueError):
        parse_event({"type": "error"})


def test_a_truncated_last_line_is_left_for_later(tmp_path: Path) -> None:
    path = tmp_path / contract.EVENTS_FILE
    whole = json.dumps({"t": 1.0, "type": "progress", "done": 1, "total": 2}) + "\n"
    torn = '{"t": 2.0, "type": "progress", "do'
    path.write_text(whole + torn)
    events, offset = read_events(path)
    assert [e["done"] for e in events] == [1]
    assert offset == len(whole.encode())
    # The writer finishes the line: the reader takes it from where it stopped.
    with path.open("a") as f:
        f.write('ne": 2, "total": 2}\n')
    events, offset = read_events(path, offset)
    assert [e["done"] for e in events] == [2]
    assert offset == path.stat().st_size
    assert read_events_of(path, "progress") == [
        {"t": 1.0, "type": "progress", "done": 1, "total": 2},
        {"t": 2.0, "type": "progress", "done": 2, "total": 2},
    ]


def test_a_torn_line_before_newer_ones_is_skipped(tmp_path: Path) -> None:
    path = tmp_path / contract.EVENTS_FILE
    path.write_text('{"t": 1.0, "type": "err\n{"t": 2.0, "type": "error", "message": "m"}\n')
    events, _ = read_events(path)
    assert events == [{"t": 2.0, "type": "error", "message": "m"}]
    assert read_events_of(path, "error") == events


def test_events_of_several_types_keep_their_order(tmp_path: Path) -> None:
    path = tmp_path / contract.EVENTS_FILE
    writer = EventWriter(path)
    writer.emit("error", message="first")
    writer.metric(1, "loss", 0.5)
    writer.emit("result", iterations=1)
    writer.close()
    assert [e["type"] for e in read_events_of(path, "result", "error")] == ["error", "result"]


def test_reading_is_bounded_by_limit(tmp_path: Path) -> None:
    path = tmp_path / contract.EVENTS_FILE
    line = json.dumps({"t": 1.0, "type": "warning", "message": "x" * 50}) + "\n"
    path.write_text(line * 10)
    events, offset = read_events(path, 0, limit=len(line) * 3 + 5)
    assert len(events) == 3 and offset == len(line) * 3


def test_a_missing_file_has_no_events(tmp_path: Path) -> None:
    assert read_events(tmp_path / "none.jsonl", 7) == ([], 7)
    assert read_events_of(tmp_path / "none.jsonl", "metric") == []


def test_run_ids() -> None:
    run_id = contract.new_run_id("train")
    assert contract.is_run_id(run_id)
    match = contract.RUN_ID_PATTERN.fullmatch(run_id)
    assert match is not None and match["kind"] == "train"
    assert contract.is_run_id("predict-20261126-114502-3f9a")
    for bad in ("train", "train-20261126-114502", "train-2026112-114502-3f9a", "x/y-1-2-3"):
        assert not contract.is_run_id(bad)
    # Sortable by time: the stamp comes first after the kind.
    assert "train-20261126-114502-ffff" < "train-20261126-114503-0000"


@pytest.mark.parametrize("iteration", [0, 1, 1000, 99_999_999, 123_456_789])
def test_checkpoint_names_round_trip(iteration: int) -> None:
    name = contract.checkpoint_name(iteration)
    assert contract.checkpoint_iteration(name) == iteration
    assert contract.CHECKPOINT_PATTERN.fullmatch(name)


def test_checkpoint_names() -> None:
    assert contract.checkpoint_name(1000) == "checkpoint_00001000.pt"
    for other in (".checkpoint_00001000.pt.tmp-123", "checkpoint_1000.pt", "best.json", "x.pt"):
        assert contract.checkpoint_iteration(other) is None


def test_list_checkpoints(tmp_path: Path) -> None:
    assert contract.list_checkpoints(tmp_path / "none") == []
    for name in (
        "checkpoint_00000020.pt",
        ".checkpoint_00000030.pt.tmp-9",
        "checkpoint_00000005.pt",
    ):
        (tmp_path / name).touch()
    assert contract.list_checkpoints(tmp_path) == [
        (5, tmp_path / "checkpoint_00000005.pt"),
        (20, tmp_path / "checkpoint_00000020.pt"),
    ]


def test_read_best(tmp_path: Path) -> None:
    assert contract.read_best(tmp_path) is None
    folder = tmp_path / contract.CHECKPOINTS
    folder.mkdir()
    (folder / contract.BEST_FILE).write_text('{"iteration": "7"}')
    assert contract.read_best(tmp_path) is None
    (folder / contract.BEST_FILE).write_text('{"iteration": 7, "voi": 0.5}')
    assert contract.read_best(tmp_path) == {"iteration": 7, "voi": 0.5}


def test_importing_the_contract_loads_no_other_engine_module() -> None:
    code = (
        "import sys\n"
        "import engine.contract\n"
        "engine = sorted(m for m in sys.modules if m.split('.')[0] == 'engine' "
        "and not m.startswith('engine.contract.'))\n"
        "heavy = sorted({m.split('.')[0] for m in sys.modules} & "
        "{'numpy', 'torch', 'gunpowder', 'daisy', 'zarr', 'tomlkit'})\n"
        "print(engine, heavy)\n"
    )
    result = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "['engine', 'engine.contract'] []"


def test_under_the_check_a_written_event_must_match_its_model(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The suite runs with LSDCTL_CHECK_EVENTS (tests/conftest.py): every writer in every
    # process it starts is held to the models.
    monkeypatch.setenv("LSDCTL_CHECK_EVENTS", "1")
    writer = EventWriter(tmp_path / contract.EVENTS_FILE)
    writer.emit("checkpoint", iteration=5, path="c.pt", best=False)
    with pytest.raises(ValueError, match="does not match its model"):
        writer.emit("checkpoint", iteration="five", path="c.pt")
    with pytest.raises(ValueError, match="no model declares"):
        writer.emit("telemetry", gpu_temp=71)
    writer.close()
    lines = (tmp_path / contract.EVENTS_FILE).read_text().splitlines()
    assert len(lines) == 1, "a refused event is not written"
    monkeypatch.delenv("LSDCTL_CHECK_EVENTS")
    unchecked = EventWriter(tmp_path / "other.jsonl")
    unchecked.emit("telemetry", gpu_temp=71)  # readers pass over unknown types
    unchecked.close()
