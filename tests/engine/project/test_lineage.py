"""engine.project.lineage and the lineage defaults of engine.runs.resolve.prepare, on hand-made
run folders."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest

from engine.contract import EventWriter, Refused, ResolvedRun, ResourcesAsked, RunRequest
from engine.data.volume import create_array, write_volume
from engine.errors import InputError
from engine.project import config as cfg
from engine.project import lineage
from engine.project.layout import init_project
from engine.runs.resolve import answer, prepare
from engine.runs.spec import RunSpec, read_spec, write_spec
from tests.checkpoint_files import write_checkpoint
from tests.engine.evaluate.test_evaluate import make_segment_run

_CONFIG = cfg.from_preset("tiny")


@pytest.fixture
def project(tmp_path: Path) -> Path:
    return init_project("p", root=tmp_path).path


def _run(
    project: Path,
    run_id: str,
    kind: str = "train",
    minute: int = 0,
    events: tuple[str, ...] = (),
    checkpoints: tuple[int, ...] = (),
    inputs: dict[str, object] | None = None,
) -> Path:
    """A run folder; `events` are terminal event types in order ("result", "error")."""
    run_dir = project / "runs" / run_id
    write_spec(
        run_dir,
        RunSpec(
            id=run_id,
            kind=kind,  # type: ignore[arg-type]
            project=str(project),
            config=_CONFIG,
            created=f"2026-01-01T00:{minute:02d}:00+00:00",
            inputs=inputs or {},
        ),
    )
    writer = EventWriter(run_dir / "events.jsonl")
    writer.metric(1, "loss", 0.5)
    for event in events:
        if event == "result":
            writer.emit("result", iterations=1)
        else:
            writer.emit("error", message="boom\nTraceback: many lines")
    writer.close()
    for iteration in checkpoints:
        folder = run_dir / "checkpoints"
        folder.mkdir(exist_ok=True)
        # Lineage never opens a checkpoint: any content will do.
        (folder / f"checkpoint_{iteration:08d}.pt").write_bytes(b"x")
    return run_dir


def test_list_runs_and_their_outcome(project: Path) -> None:
    _run(project, "t-new", minute=3, events=("result", "error"))
    _run(project, "t-old", minute=1, events=("result",))
    _run(project, "t-resumed", minute=2, events=("error", "result"))
    _run(project, "t-running", minute=4)
    _run(project, "p-1", kind="predict", minute=5, events=("result",), inputs={"train_run": "t"})
    (project / "runs" / "not-a-run").mkdir()
    with (project / "runs" / "t-old" / "events.jsonl").open("a") as f:
        f.write('{"type": "error", "mess')  # a torn last line is no error
    runs = lineage.list_runs(project, "train")
    assert [r.id for r in runs] == ["t-old", "t-resumed", "t-new", "t-running"]
    assert [r.status for r in runs] == ["succeeded", "succeeded", "failed", "unfinished"]
    assert runs[2].error == "boom Traceback: many lines"  # one line
    assert [r.id for r in lineage.list_runs(project)][-1] == "p-1"
    assert lineage.list_runs(project, "predict")[0].parent == "t"
    assert lineage.latest_succeeded(project, "train").id == "t-resumed"  # type: ignore[union-attr]
    assert lineage.latest_succeeded(project, "segment") is None
    assert lineage.list_runs(project.parent / "nowhere") == []


def test_checkpoint_names_match_engine_checkpoints(project: Path) -> None:
    from engine.runs.checkpoints import list_checkpoints

    run_dir = _run(project, "t", checkpoints=(5, 1000, 20))
    (run_dir / "checkpoints" / ".checkpoint_00000030.pt.tmp-1").write_bytes(b"")
    assert lineage.list_checkpoints(run_dir) == list_checkpoints(run_dir / "checkpoints")
    assert [i for i, _ in lineage.list_checkpoints(run_dir)] == [5, 20, 1000]


def test_default_checkpoint_prefers_the_newest_succeeded_run(project: Path) -> None:
    with pytest.raises(InputError) as caught:
        lineage.resolve_checkpoint(project, None)
    assert str(caught.value) == "no checkpoint in project p: train first (lsdctl train --project p)"
    _run(project, "t-empty", minute=0, events=("result",))
    with pytest.raises(InputError, match=r"train runs without one: t-empty \(succeeded\)"):
        lineage.resolve_checkpoint(project, None)

    _run(project, "t-failed", minute=1, events=("error",), checkpoints=(10, 20))
    choice = lineage.resolve_checkpoint(project, None)
    assert (choice.train_run, choice.iteration) == ("t-failed", 20)
    assert choice.note is not None and "t-failed has not succeeded (failed)" in choice.note

    good = _run(project, "t-good", minute=2, events=("result",), checkpoints=(30,))
    _run(project, "t-newer", minute=3, checkpoints=(40,))  # still running
    choice = lineage.resolve_checkpoint(project, None)
    assert choice == lineage.CheckpointChoice(
        good / "checkpoints" / "checkpoint_00000030.pt", "t-good", 30
    )


def test_named_checkpoints(project: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    run_dir = _run(project, "t", events=("result",), checkpoints=(10, 20))
    _run(project, "p-1", kind="predict")
    assert lineage.resolve_checkpoint(project, "t").iteration == 20
    assert lineage.resolve_checkpoint(project, "t:10").path.name == "checkpoint_00000010.pt"
    with pytest.raises(
        InputError, match="train run t has no checkpoint at iteration 15: it has 10, 20"
    ):
        lineage.resolve_checkpoint(project, "t:15")
    with pytest.raises(
        InputError, match=r"no run 'x' in project p: its train runs: t \(succeeded\)"
    ):
        lineage.resolve_checkpoint(project, "x:10")
    with pytest.raises(InputError, match="run p-1 is a predict run, not a train run"):
        lineage.resolve_checkpoint(project, "p-1")
    _run(project, "t-none", events=("error",))
    with pytest.raises(InputError, match=r"train run t-none \(failed\) has no checkpoint yet"):
        lineage.resolve_checkpoint(project, "t-none")

    # A path: absolute, relative to the working directory or to the project.
    inside = run_dir / "checkpoints" / "checkpoint_00000010.pt"
    assert lineage.resolve_checkpoint(project, str(inside)).train_run == "t"
    monkeypatch.chdir(project.parent)
    choice = lineage.resolve_checkpoint(project, "runs/t/checkpoints/checkpoint_00000020.pt")
    assert (choice.path, choice.train_run, choice.iteration) == (
        (run_dir / "checkpoints" / "checkpoint_00000020.pt").resolve(),
        "t",
        20,
    )
    outside = project.parent / "model.pt"
    outside.write_bytes(b"x")
    assert lineage.resolve_checkpoint(project, "model.pt") == lineage.CheckpointChoice(
        outside.resolve(), None, None
    )
    with pytest.raises(InputError, match=r"checkpoint file gone\.pt does not exist"):
        lineage.resolve_checkpoint(project, "gone.pt")


def test_resolve_parent(project: Path) -> None:
    with pytest.raises(InputError) as caught:
        lineage.resolve_parent(project, "predict", None)
    assert str(caught.value) == (
        "no succeeded predict run in project p: run `lsdctl predict --project p` first"
    )
    _run(project, "p-old", kind="predict", minute=1, events=("result",))
    _run(project, "p-bad", kind="predict", minute=2, events=("error",))
    assert lineage.resolve_parent(project, "predict", None).id == "p-old"
    assert lineage.resolve_parent(project, "predict", str(project / "runs" / "p-old")).id == "p-old"
    with pytest.raises(InputError) as caught:
        lineage.resolve_parent(project, "predict", "p-bad")
    assert str(caught.value) == (
        "predict run p-bad has not succeeded (failed: boom Traceback: many lines); "
        "succeeded ones: p-old (succeeded)"
    )
    with pytest.raises(InputError, match="no succeeded segment run in project p"):
        lineage.resolve_parent(project, "segment", None)


# ---- engine.runs.resolve.prepare: lineage defaults per kind ------------------------------------
def _prepare(project: Path, kind: str, **request: Any) -> dict[str, Any]:
    """prepare's answer as its JSON object (what the daemon reads)."""
    workers = request.pop("workers", None)
    asked = RunRequest(project=str(project), kind=kind, resources={"workers": workers}, **request)
    return prepare(asked).model_dump(mode="json")


def _predictions(project: Path, run_id: str, volumes: tuple[str, ...], affs: bool = True) -> Path:
    run_dir = _run(project, run_id, kind="predict", minute=10, events=("result",))
    for name in volumes:
        container = run_dir / "predictions" / f"{name}.zarr"
        dataset = "pred_affs" if affs else "pred_lsds"
        create_array(container, dataset, (3, 4, 4, 4), np.uint8, (8, 8, 8), (0, 0, 0))
    return run_dir


def test_prepare_predict_fills_checkpoint_volumes_and_resources(project: Path) -> None:
    _run(project, "t", events=("result",), checkpoints=(10,))
    raw = np.zeros((4, 4, 4), dtype=np.uint8)
    with pytest.raises(InputError, match="project p has no test volumes to predict"):
        _prepare(project, "predict")
    for split, name in (("test", "b"), ("test", "a"), ("train", "c")):
        write_volume(project / split / f"{name}.zarr", raw, None, (8, 8, 8))

    answer_ = _prepare(project, "predict", overrides={"predict.executor": "slurm"})
    inputs = answer_["inputs"]
    assert inputs == {
        "checkpoint": str(project.resolve() / "runs/t/checkpoints/checkpoint_00000010.pt"),
        "train_run": "t",
        "volumes": [str(project.resolve() / "test" / f"{n}.zarr") for n in ("a", "b")],
        "overwrite": False,
    }
    assert answer_["resources"] == {"gpus": [], "workers": 2, "executor": "slurm"}
    assert answer_["notes"] == []
    # Resolved inputs resolve to themselves: the daemon prepares what the CLI prepared.
    assert _prepare(project, "predict", inputs=inputs)["inputs"] == inputs

    named = _prepare(project, "predict", inputs={"volumes": ["c", "test/a.zarr"]}, workers=3)
    assert [Path(v).name for v in named["inputs"]["volumes"]] == ["c.zarr", "a.zarr"]  # type: ignore[index]
    assert named["resources"]["workers"] == 3  # type: ignore[index]
    with pytest.raises(InputError, match=r"volume nope not found: .* \(test volumes: a, b\)"):
        _prepare(project, "predict", inputs={"volumes": ["nope"]})
    with pytest.raises(InputError, match="named twice"):
        _prepare(project, "predict", inputs={"volumes": ["a", "test/a.zarr"]})
    with pytest.raises(InputError, match="unknown input 'checkpont' for a predict run"):
        _prepare(project, "predict", inputs={"checkpont": "t"})
    with pytest.raises(InputError, match="overwrite must be true or false"):
        _prepare(project, "predict", inputs={"overwrite": "yes"})

    # A file from outside the runs has no train run; TOML has no null, so no key.
    outside = write_checkpoint(project.parent / "model.pt", project)
    run_dir = project / "runs" / "predict-1"
    inputs = {"checkpoint": str(outside)}
    _prepare(project, "predict", inputs=inputs, run_id="predict-1", run_dir=str(run_dir))
    assert read_spec(run_dir).inputs["checkpoint"] == str(outside.resolve())
    assert "train_run" not in read_spec(run_dir).inputs


def test_workers_asked_for_are_the_workers_resolved(project: Path) -> None:
    # The resolver is the one place predict.num_workers applies: `--workers 1` is one
    # worker, no --workers is predict.num_workers, on the wire and in run.toml alike.
    _run(project, "t", events=("result",), checkpoints=(10,))
    for split in ("test", "train"):
        write_volume(project / split / "a.zarr", np.zeros((4, 4, 4), np.uint8), None, (8, 8, 8))
    three = {"predict.num_workers": 3}
    assert _prepare(project, "predict", overrides=three, workers=1)["resources"]["workers"] == 1
    assert _prepare(project, "predict", overrides=three)["resources"]["workers"] == 3
    train = _prepare(project, "train", overrides={"train.validate_every": 0})["resources"]
    assert train == {"gpus": [], "workers": 1, "executor": "local"}

    run_dir = project / "runs" / "predict-1"
    asked = RunRequest(
        project=str(project),
        kind="predict",
        overrides=three,
        resources=ResourcesAsked(workers=1),
        run_id="predict-1",
        run_dir=str(run_dir),
    )
    reply = answer(asked.model_dump_json())
    assert isinstance(reply, ResolvedRun), reply
    assert reply.resources.workers == 1 and reply.id == "predict-1"
    assert read_spec(run_dir).resources.workers == 1


def test_prepare_segment_and_evaluate_pick_their_parents(project: Path) -> None:
    with pytest.raises(InputError, match="no succeeded predict run in project p"):
        _prepare(project, "segment")
    run_dir = _predictions(project, "predict-1", ("x", "y"))
    inputs = _prepare(project, "segment")["inputs"]
    assert inputs == {
        "predict_run": str(run_dir.absolute()),
        "volumes": [str(run_dir / "predictions" / f"{n}.zarr") for n in ("x", "y")],
    }
    assert _prepare(project, "segment", inputs=inputs)["inputs"] == inputs
    chosen = _prepare(project, "segment", inputs={"predict_run": "predict-1", "volumes": ["y"]})
    assert [Path(v).name for v in chosen["inputs"]["volumes"]] == ["y.zarr"]  # type: ignore[index]
    with pytest.raises(InputError, match=r"no prediction z in .*predictions: there are x, y"):
        _prepare(project, "segment", inputs={"volumes": ["z"]})
    _predictions(project, "predict-2", ("x",), affs=False)
    with pytest.raises(InputError, match="has no pred_affs"):
        _prepare(project, "segment")

    with pytest.raises(InputError, match="no succeeded segment run in project p"):
        _prepare(project, "evaluate")
    segment_run = make_segment_run(project)
    evaluate = _prepare(project, "evaluate", overrides={}, workers=None)
    assert evaluate["inputs"] == {"segment_run": str(segment_run.absolute())}
    # Evaluate counts blockwise: its workers default to predict.num_workers, like segment.
    assert evaluate["resources"] == {"gpus": [], "workers": 2, "executor": "local"}


def test_prepare_writes_run_toml_with_resources_and_answer_refuses_in_one_line(
    project: Path,
) -> None:
    segment_run = make_segment_run(project, with_labels=False)
    reply = answer(f'{{"op": "prepare", "project": "{project}", "kind": "evaluate"}}')
    assert isinstance(reply, Refused)
    assert reply.ok is False and reply.status == 422
    assert "has no labels" in reply.message and "\n" not in reply.message
    assert not (project / "runs" / "evaluate-1").exists()

    _predictions(project, "predict-1", ("x",))
    run_dir = project / "runs" / "segment-2"
    _prepare(
        project,
        "segment",
        run_id="segment-2",
        run_dir=str(run_dir),
        overrides={"segment.thresholds": [0.5, 0.25]},
    )
    spec = read_spec(run_dir)
    assert spec.kind == "segment" and spec.config.segment.thresholds == [0.25, 0.5]
    assert spec.resources.workers == 2 and spec.resources.executor == "local"
    assert spec.inputs["predict_run"] == str((project / "runs" / "predict-1").absolute())
    assert segment_run.is_dir()
