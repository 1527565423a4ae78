"""`lsdctl train --init-from` (fine-tuning) and the checkpoint files `train --init-from`
and `predict --checkpoint` refuse: one line, exit 2, before any run directory exists."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch

from engine.contract import read_events
from engine.runs.checkpoints import list_checkpoints, load_checkpoint
from tests.conftest import CliCaller, tree


class _Payload:
    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self) -> tuple[object, tuple[str]]:
        return (os.system, (f"touch {self.marker}",))


def _project(cli: CliCaller) -> None:
    cli.ok("init", "p", "--preset", "tiny")
    for key, value in (
        ("system.num_workers", "0"),
        ("train.validate_every", "0"),
        ("train.checkpoint_every", "2"),
        ("model.input_shape", "[28, 28, 28]"),
    ):
        cli.ok("config", "set", "p", key, value)
    cli.ok("data", "synth", "--project", "p", "--shape", "32,32,32")
    cli.ok("data", "synth", "--project", "p", "--split", "test", "--shape", "24,24,24")


@pytest.mark.slow
def test_fine_tuning_starts_from_the_weights_with_a_fresh_optimizer(
    cli: CliCaller, projects: Path
) -> None:
    _project(cli)
    cli.ok("train", "--project", "p", "--local", "--iterations", "2")
    (base,) = (projects / "p" / "runs").iterdir()
    cli.ok("train", "--project", "p", "--local", "--iterations", "2", "--init-from", base.name)
    (tuned,) = [r for r in (projects / "p" / "runs").iterdir() if r != base]
    events, _ = read_events(tuned / "events.jsonl")
    (start,) = [e for e in events if e["type"] == "initialized"]
    assert start["iteration"] == 2 and start["path"].endswith("checkpoint_00000002.pt")
    losses = [e["step"] for e in events if e["type"] == "metric" and e["name"] == "loss"]
    assert losses == [1, 2]  # the iteration count starts again
    state = load_checkpoint(list_checkpoints(tuned / "checkpoints")[-1][1])
    assert all(float(s["step"]) == 2 for s in state["optimizer"]["state"].values())
    # The file form names the same weights; a project-relative path works too.
    relative = base.relative_to(projects / "p") / "checkpoints" / "checkpoint_00000002.pt"
    before = tree(projects / "p" / "runs")
    # A model that does not fit: refused naming the layer, no run directory.
    cli.ok("config", "set", "p", "model.num_fmaps", "4")
    result = cli.bad(
        "train", "--project", "p", "--local", "--init-from", str(relative), match="does not fit"
    )
    assert "layer unet.down.0.0.weight is [6, 1, 3, 3, 3]" in result.stderr
    assert "needs [4, 1, 3, 3, 3]" in result.stderr
    assert tree(projects / "p" / "runs") == before


@pytest.mark.slow
def test_bad_checkpoint_files_are_refused_before_a_run_exists(
    cli: CliCaller, projects: Path, tmp_path: Path
) -> None:
    _project(cli)
    text = tmp_path / "notes.pt"
    text.write_text("weights? no\n")
    marker = tmp_path / "ran"
    evil = tmp_path / "evil.pt"
    torch.save({"model": {"w": torch.zeros(1)}, "x": _Payload(marker)}, evil)
    before = tree(projects)
    for args, match in (
        (["train", "--init-from", str(text)], "not a torch checkpoint"),
        (["train", "--init-from", str(evil)], "refused"),
        (["train", "--init-from", "nope:best"], "nope"),
        (["predict", "--checkpoint", str(text)], "not a torch checkpoint"),
        (["predict", "--checkpoint", str(evil)], "refused"),
    ):
        cli.bad(*args, "--project", "p", "--local", match=match)
    assert not marker.exists()
    assert tree(projects) == before
    cli.bad("train", "--project", "p", "--resume", "x", "--init-from", "y", match="--init-from")


@pytest.mark.slow
def test_the_daemon_refuses_a_bad_file_before_queueing(
    cli: CliCaller, projects: Path, tmp_path: Path, home: Path
) -> None:
    # Through the daemon: its resolver helper checks the file (in a child process).
    _project(cli)
    text = tmp_path / "notes.pt"
    text.write_text("weights? no\n")
    before = tree(projects)
    cli.bad("train", "--project", "p", "-d", "--init-from", str(text), match="not a torch")
    assert tree(projects) == before
