"""`lsdctl demo` end to end: a real daemon trains, predicts, segments and evaluates."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from engine.project import lineage
from tests.conftest import CliCaller, tree


@pytest.mark.slow
def test_demo_learns_beats_both_baselines_and_reuses(
    cli: CliCaller, projects: Path, home: Path
) -> None:
    # Also the suite's check that the tiny MTLSD learns on synthetic data (the real-data
    # learning tests are in tests/engine/train/test_learning_real_data.py).
    # Fewer iterations than the demo's 300, to keep the suite short; still enough to
    # beat both baselines by far (120 iterations: VOI 0.83-0.88; 300: 0.68 against 2.8
    # and 6.9).
    first = cli.ok("demo", "--iterations", "120")
    for step in range(1, 8):
        assert f"[{step}/7]" in first.stdout
    project = projects / "demo"
    kinds = ("train", "predict", "segment", "evaluate")
    runs = {kind: lineage.latest_succeeded(project, kind) for kind in kinds}
    assert all(runs.values()), runs
    evaluate = runs["evaluate"]
    assert evaluate is not None
    metrics = json.loads((evaluate.dir / "metrics.json").read_text())
    best, baselines = metrics["headline"], metrics["baselines"]
    print(
        f"demo: model VOI {best['voi']:.3f} (threshold {best['threshold']}, chosen on "
        f"{metrics['chosen_on']}; oracle {metrics['oracle']['voi']:.3f}), "
        + ", ".join(f"{k} {v['voi']:.3f}" for k, v in baselines.items())
    )
    # Honest: checkpoint and threshold chosen on the validation volume during training.
    assert metrics["chosen_on"] == "validation"
    train = runs["train"]
    assert train is not None
    best_json = json.loads((train.dir / "checkpoints" / "best.json").read_text())
    assert best["threshold"] == best_json["threshold"]
    assert "chosen on validation" in first.stdout
    assert set(baselines) == {"one_segment", "fragments"}
    assert all(best["voi"] < b["voi"] for b in baselines.values())
    assert "beats both baselines" in first.stdout
    assert "lsdctl tui" in first.stdout

    before = tree(project)
    second = cli.ok("demo", "--iterations", "120")
    assert second.stdout.count("reusing run") == 4
    assert tree(project) == before
