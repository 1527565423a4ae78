"""`lsdctl evaluate`: --local with --json and the table, and on a region."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from engine.runs.spec import read_spec
from lsdctl.cli import evaluate
from tests.conftest import CliCaller
from tests.engine.evaluate.test_evaluate import make_segment_run


def test_evaluate_local_json_and_table(
    cli: CliCaller, projects: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    cli.ok("init", "p")
    segment_run = make_segment_run(projects / "p")
    result = cli.ok("evaluate", "--project", "p", "--local", "--json")
    printed = json.loads(result.stdout)
    assert printed["threshold"] == 0.1
    assert printed["voi_split"] == printed["voi_merge"] == printed["arand"] == 0.0
    assert [r["threshold"] for r in printed["per_threshold"]] == [0.1, 0.9]
    assert printed["per_threshold"][1]["voi_merge"] > 1.0
    assert f"segmentations: run {segment_run.name}" in result.stderr
    run_dir = Path(printed["metrics"]).parent
    assert run_dir.parent == projects / "p" / "runs" and run_dir.name.startswith("evaluate-")
    assert (run_dir / "scores.png").is_file()

    metrics = json.loads((run_dir / "metrics.json").read_text())
    evaluate._print_metrics(metrics, run_dir)
    table = capsys.readouterr().out
    assert "0.10" in table and "0.90" in table and "best on test (no validation)" in table
    assert printed["chosen_on"] == "test"
    assert (
        "threshold 0.10, chosen on the test labels themselves (no validation, so the score is "
        "optimistic): voi_split 0.0000, voi_merge 0.0000, VOI 0.0000, arand 0.0000" in table
    )

    # With a threshold chosen on validation, that row is the headline and the best on the
    # test labels is a separate, labelled oracle row.
    rows = metrics["per_threshold"]
    validated = {
        **metrics,
        "chosen_on": "validation",
        "headline": rows[1],
        "oracle": rows[0],
        "validation": {"train_run": "train-x", "iteration": 500, "threshold": 0.9},
    }
    evaluate._print_metrics(validated, run_dir)
    table = capsys.readouterr().out
    assert "chosen on validation" in table and "oracle: best on test" in table
    assert "threshold 0.90, chosen on validation (train run train-x, iteration 500)" in table
    assert "oracle, threshold 0.10 chosen on these labels themselves" in table
    assert evaluate.best_scores(validated, run_dir)["voi"] == rows[1]["voi"]


def test_evaluate_on_a_region(cli: CliCaller, projects: Path) -> None:
    cli.ok("init", "p")
    make_segment_run(projects / "p")
    result = cli.ok(
        "evaluate", "--project", "p", "--local", "--json", "--roi", "0:4,0:16,0:8vx",
        "--workers", "2",
    )  # fmt: skip
    printed = json.loads(result.stdout)
    metrics = json.loads(Path(printed["metrics"]).read_text())
    assert metrics["volumes"]["vol"]["roi"] == {"offset": [32, 0, 0], "shape": [32, 128, 64]}
    spec = read_spec(Path(printed["metrics"]).parent)
    assert spec.inputs["roi"] == "0:4,0:16,0:8vx" and spec.resources.workers == 2
