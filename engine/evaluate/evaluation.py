"""`python -m engine.evaluate RUN_DIR`: score a segment run's segmentations against labels.

Follows the run-directory contract (DESIGN.md). run.toml's inputs name the segment run
(`segment_run`, its folder). Each of its segmentation zarrs holds `segmentation_<t>`
datasets (one per agglomeration threshold t, formatted %.2f) and names, in its
`source_volume` attribute, the volume whose `labels` are the ground truth. Each
segmentation is scored on the part of its ROI that the labels cover; labels 0 and voxels
outside `labels_mask` (if the volume has one) are ignored (engine.evaluate.metrics).

Writes, atomically, RUN_DIR/metrics.json:

  {"segment_run": PATH, "weighting": "voxels",
   "volumes": {NAME: {"segmentation": PATH, "source_volume": PATH,
                      "roi": {"offset": [nm], "shape": [nm]}, "voxels": N,
                      "per_threshold": [{"threshold", "dataset", "voi_split",
                                         "voi_merge", "voi", "arand"}, ...],
                      "oracle": {...one of per_threshold...},
                      "baselines": {"one_segment": {...}, "fragments": {...}}}},
   "per_threshold": [...over all volumes...],
   "chosen_on": "validation" | "test",
   "headline": {...the row of per_threshold at the chosen threshold...},
   "validation": {"train_run", "step", "threshold", "voi", ...} (chosen on validation),
   "oracle": {...the row with the lowest VOI on these labels...}, "baselines": {...}}

The headline is the score to report. Its threshold was chosen on the validation volumes
during training, when the segmentation carries that choice (its `validation` attribute,
from the prediction of a validated checkpoint); otherwise it is the best threshold on the
scored labels themselves (`chosen_on: "test"`), which flatters the score. The oracle row
is always the best on the scored labels, for comparison only.

The baselines are what a model must beat, on the same voxels: everything one segment,
and the segment run's fragments without agglomeration (when its zarr holds them).

and RUN_DIR/scores.png (VOI split, merge and adapted Rand error against threshold).
"Over all volumes" weighs each volume by its scored (non-ignored) voxels: for VOI this is
exactly the VOI of all volumes taken as one (their ids kept apart), because conditional
entropies add up over disjoint parts; for the adapted Rand error, which counts voxel
pairs, it is the voxel-weighted mean. The best threshold has the lowest VOI
(split + merge); ties go to the lower adapted Rand error, then the lower threshold.

Events: progress (done/total thresholds scored), result (the headline scores, chosen_on,
the oracle row, paths).
Exit codes: 0 done, 2 bad input (missing labels, no segmentations; nothing written),
3 interrupted by SIGTERM/SIGINT (nothing written; run it again), 1 anything else.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import signal
import sys
import tempfile
import traceback
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import FrameType
from typing import Any

import numpy as np

from engine.blockwise.run import run_task, scheduling
from engine.blockwise.stopping import Interrupted as BlocksInterrupted
from engine.blockwise.stopping import request_stop
from engine.contract import EVENTS_FILE, EventWriter
from engine.data.mask import recorded
from engine.entry import configure_logging, missing_run_dir
from engine.errors import EngineError, InputError
from engine.evaluate.block_counts import (
    COUNTS_DIR,
    TRACKING,
    CountPlan,
    count_every_block,
    plan_counts,
)
from engine.evaluate.metrics import Scores
from engine.evaluate.partitioned_scores import count_scores
from engine.project import lineage
from engine.project.config import write_atomic
from engine.runs.spec import RunSpec, read_spec
from engine.train.validation import VALIDATION_ATTR

logger = logging.getLogger(__name__)

EXIT_OK, EXIT_FAILED, EXIT_BAD_INPUT, EXIT_INTERRUPTED = 0, 1, 2, 3
METRICS_FILE, PLOT_FILE = lineage.METRICS_FILE, lineage.PLOT_FILE
# A light home (lineage), so the frontend lists segmentations without this module.
segmentation_datasets = lineage.segmentation_datasets
# The segment run's fragments, before agglomeration: a baseline.
FRAGMENTS = "fragments"


class Interrupted(Exception):
    """SIGTERM or SIGINT arrived: stop between thresholds, write nothing."""


class _StopFlag:
    def __init__(self) -> None:
        self.signal: int | None = None

    def __call__(self, signum: int, frame: FrameType | None) -> None:
        self.signal = signum
        request_stop()  # ends the blockwise count in progress, if any

    def check(self) -> None:
        if self.signal is not None:
            raise Interrupted(f"stopped by signal {self.signal}")


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m engine.evaluate", description=__doc__)
    parser.add_argument("run_dir", type=Path)
    args = parser.parse_args(argv)
    configure_logging()
    run_dir: Path = args.run_dir
    if missing_run_dir(run_dir):
        return EXIT_BAD_INPUT
    events = EventWriter(run_dir / EVENTS_FILE)
    stop = _StopFlag()
    previous = signal.getsignal(signal.SIGTERM), signal.getsignal(signal.SIGINT)
    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    try:
        spec = read_spec(run_dir)
        return Evaluation(run_dir, spec, events, stop).run()
    except InputError as exc:
        events.emit("error", durable=True, message=str(exc))
        sys.stderr.write(f"error: {exc}\n")
        return EXIT_BAD_INPUT
    except (Interrupted, BlocksInterrupted) as exc:
        events.emit("interrupted", durable=True, message="stopped by a signal; resumable")
        logger.info("%s; counted blocks are kept, metrics.json not written", exc)
        return EXIT_INTERRUPTED
    except Exception as exc:
        events.emit("error", durable=True, message=f"{type(exc).__name__}: {exc}")
        traceback.print_exc()
        return EXIT_FAILED
    finally:
        events.close()
        signal.signal(signal.SIGTERM, previous[0])
        signal.signal(signal.SIGINT, previous[1])


@dataclass(frozen=True)
class Target:
    """One segmentation zarr to score, with its ground truth and thresholds."""

    name: str
    segmentation: Path
    source: Path
    thresholds: list[tuple[float, str]]
    """(threshold, dataset name), ascending."""


class Evaluation:
    """Scores every threshold of every segmentation of one segment run."""

    def __init__(self, run_dir: Path, spec: RunSpec, events: EventWriter, stop: _StopFlag) -> None:
        self.run_dir = run_dir
        self.spec = spec
        self.events = events
        self.stop = stop

    def _targets(self) -> list[Target]:
        return targets_of(self.run_dir, self.spec)

    def run(self) -> int:
        targets = self._targets()
        plans = count_plans(self.run_dir, self.spec, targets)
        config, resources = self.spec.config, self.spec.resources
        executor = resources.executor if resources.executor != "local" else config.predict.executor
        common: dict[str, Any] = {
            "run_dir": self.run_dir,
            "events": self.events,
            "workers": max(1, resources.workers),
            # CPU work: cluster jobs ask for no GPU, but get predict's queue, time, account.
            **scheduling(config, executor, gpu=False),
        }
        total = sum(p.grid.num_blocks for p in plans)
        done = 0
        volumes: dict[str, dict[str, Any]] = {}
        for target, plan in zip(targets, plans):
            self.stop.check()
            outcome = run_task(
                task_id=plan.task_id,
                grid=plan.grid,
                target="engine.evaluate.block_counts:counter",
                tracking_dir=plan.folder / TRACKING,
                progress=(done, total),
                **common,
            )
            if not outcome.ok:
                raise EngineError(f"{target.name}: {outcome.error}")
            done += outcome.total
            logger.info(
                "%s: %d blocks counted (%d without scored voxels) in %.1f s",
                target.name,
                outcome.total,
                outcome.masked,
                outcome.seconds,
            )
            volumes[target.name] = volume_scores(target, plan)
        return self.finish(targets, volumes)

    def finish(self, targets: list[Target], volumes: dict[str, dict[str, Any]]) -> int:
        per_threshold = combine(volumes)
        if not per_threshold:
            raise InputError("the segmentations share no threshold: nothing to compare")
        oracle = best_of(per_threshold)
        validation, why_not = chosen_on_validation(targets)
        headline = _row_at(per_threshold, validation["threshold"]) if validation else None
        if validation is not None and headline is None:
            why_not = (
                f"the segmentations have no segmentation_{validation['threshold']:.2f}, the "
                "threshold chosen on validation: segment the prediction again"
            )
        if headline is None:
            chosen_on, headline, validation = "test", oracle, None
            if why_not:
                self.events.emit(
                    "warning", message=f"threshold chosen on the test labels: {why_not}"
                )
        else:
            chosen_on = "validation"
        metrics = {
            "segment_run": str(self.spec.inputs["segment_run"]),
            "weighting": "voxels",
            "volumes": volumes,
            "per_threshold": per_threshold,
            "chosen_on": chosen_on,
            "headline": headline,
            "validation": validation,
            "oracle": oracle,
            "baselines": combine_baselines(volumes),
        }
        self.stop.check()
        plot = plot_scores(self.run_dir / PLOT_FILE, per_threshold, headline, chosen_on, volumes)
        if plot is None:
            self.events.emit(
                "warning", message="matplotlib is not installed: no scores.png, metrics only"
            )
        # metrics.json last: its presence means the evaluation is complete.
        write_atomic(self.run_dir / METRICS_FILE, json.dumps(metrics, indent=2) + "\n")
        self.events.emit(
            "result",
            durable=True,
            **headline,
            chosen_on=chosen_on,
            oracle=oracle,
            baselines=metrics["baselines"],
            volumes=len(volumes),
            metrics=str(self.run_dir / METRICS_FILE),
            plot=str(plot) if plot else None,
        )
        logger.info(
            "threshold %.2f (chosen on %s): voi_split %.4f, voi_merge %.4f, arand %.4f; "
            "oracle (best on these labels) %.2f: voi %.4f",
            headline["threshold"],
            chosen_on,
            headline["voi_split"],
            headline["voi_merge"],
            headline["arand"],
            oracle["threshold"],
            oracle["voi"],
        )
        return EXIT_OK


def count_plans(
    run_dir: Path, spec: RunSpec, targets: Sequence[Target] | None = None
) -> list[CountPlan]:
    """The blockwise counts of an evaluate run, one per segmentation (workers rebuild them
    from run.toml). Every input is checked here, before any block is counted."""
    roi = spec.inputs.get("roi")
    return [
        plan_target(t, run_dir / COUNTS_DIR / t.name, roi=str(roi) if roi else None)
        for t in (targets if targets is not None else targets_of(run_dir, spec))
    ]


def targets_of(run_dir: Path, spec: RunSpec) -> list[Target]:
    """The segmentations an evaluate run scores, with their labels and thresholds."""
    if spec.kind != "evaluate":
        raise InputError(f"{run_dir} is a {spec.kind} run, not an evaluate run")
    segment_run = spec.inputs.get("segment_run")
    if not segment_run:
        raise InputError("run.toml names no segment_run to evaluate")
    segment_dir = Path(str(segment_run))
    if not segment_dir.is_dir():
        raise InputError(f"segment run {segment_dir} does not exist")
    containers = lineage.run_outputs(segment_dir, "segmentation")
    if not containers:
        raise InputError(f"segment run {segment_dir.name} has no segmentations to evaluate")
    # Every input is checked before any scoring: a bad last volume fails in seconds.
    targets = []
    for container in containers:
        source = lineage.ground_truth_of(container)
        thresholds = segmentation_datasets(container)
        if not thresholds:
            raise InputError(f"{container} has no segmentation_<threshold> datasets")
        targets.append(Target(container.stem, container, source, thresholds))
    return targets


def chosen_on_validation(targets: Sequence[Target]) -> tuple[dict[str, Any] | None, str | None]:
    """The validation choice every segmentation carries, or (None, why not).

    A segmentation of a validated checkpoint's prediction names the threshold chosen on
    the validation volumes (attribute `validation`); all must name the same one.
    """
    import zarr

    found = []
    for target in targets:
        record = zarr.open_group(str(target.segmentation), mode="r").attrs.get(VALIDATION_ATTR)
        found.append(record if isinstance(record, dict) and "threshold" in record else None)
    if all(f is None for f in found):
        return None, None
    if any(f is None for f in found):
        return None, "some segmentations come from a checkpoint without validation"
    thresholds = {round(float(f["threshold"]), 6) for f in found if f is not None}
    if len(thresholds) > 1:
        return None, f"the segmentations name different validation thresholds {sorted(thresholds)}"
    return found[0], None


def _row_at(rows: list[dict[str, Any]], threshold: float) -> dict[str, Any] | None:
    return next((dict(r) for r in rows if round(r["threshold"], 6) == round(threshold, 6)), None)


def plan_target(
    target: Target, folder: Path, block: Sequence[int] | None = None, roi: str | None = None
) -> CountPlan:
    """The blockwise count of one segmentation: every threshold and, as a baseline, its
    fragments; scored where its labels are non-zero, inside `labels_mask` and the mask its
    prediction was made with, within `roi`. `block` (voxels) defaults to the chunks of the
    segmentation (the segment run's write blocks)."""
    import zarr

    datasets = [name for _, name in target.thresholds]
    if (target.segmentation / FRAGMENTS).is_dir():
        datasets.append(FRAGMENTS)
    attrs = zarr.open_group(str(target.segmentation), mode="r").attrs.asdict()
    found = recorded(attrs)
    if block is None:
        block = zarr.open_array(str(target.segmentation / datasets[0]), mode="r").chunks
    return plan_counts(
        target.name,
        target.segmentation,
        target.source,
        datasets,
        block,
        folder,
        roi,
        masks=[found] if found else [],
    )


def volume_scores(target: Target, plan: CountPlan) -> dict[str, Any]:
    """Scores of each threshold of one segmentation from its block tables, merged part
    by part when large (engine.partitioned_scores)."""
    counted = count_scores(plan)
    voxels = counted.voxels
    if voxels == 0 or counted.one_segment is None:
        raise InputError(
            f"the labels of {target.source} are all background (or masked out) where "
            f"{target.segmentation} lies: nothing to score"
        )
    rows = []
    for threshold, name in target.thresholds:
        scores = counted.scores[name]
        rows.append({"threshold": threshold, "dataset": name, **_row(scores)})
        logger.info(
            "%s %s: voi_split %.4f, voi_merge %.4f, arand %.4f",
            target.name,
            name,
            scores.voi_split,
            scores.voi_merge,
            scores.arand,
        )
    baselines = {"one_segment": _row(counted.one_segment)}
    if FRAGMENTS in counted.scores:
        baselines["fragments"] = _row(counted.scores[FRAGMENTS])
    region = plan.region
    return {
        "baselines": baselines,
        "segmentation": str(target.segmentation),
        "source_volume": str(target.source),
        "roi": {"offset": list(region.offset), "shape": list(region.shape)},
        "voxels": voxels,
        "per_threshold": rows,
        "oracle": best_of(rows),
    }


def _row(scores: Scores) -> dict[str, float]:
    return {
        "voi_split": scores.voi_split,
        "voi_merge": scores.voi_merge,
        "voi": scores.voi,
        "arand": scores.arand,
    }


def score_volume(
    target: Target,
    check_stop: Callable[[], None] | None = None,
    tick: Callable[[], None] | None = None,
    block: Sequence[int] | None = None,
    roi: str | None = None,
) -> dict[str, Any]:
    """Scores of each threshold of one segmentation, counted block by block in this
    process (validation during training): the same counts an evaluate run's workers make.

    `check_stop` is called before counting (it raises to stop), `tick` once at the end.
    """
    if check_stop is not None:
        check_stop()
    with tempfile.TemporaryDirectory(prefix="lsdctl-counts-") as folder:
        plan = plan_target(target, Path(folder), block, roi)
        count_every_block(plan)
        result = volume_scores(target, plan)
    if tick is not None:
        tick()
    return result


def combine_baselines(volumes: dict[str, dict[str, Any]]) -> dict[str, dict[str, float]]:
    """The baselines over all volumes, weighted by scored voxels (as `combine`)."""
    weights = np.array([v["voxels"] for v in volumes.values()], dtype=np.float64)
    weights /= weights.sum()
    names = set.intersection(*(set(v["baselines"]) for v in volumes.values()))
    return {
        name: {
            key: float(
                sum(w * v["baselines"][name][key] for w, v in zip(weights, volumes.values()))
            )
            for key in ("voi_split", "voi_merge", "voi", "arand")
        }
        for name in sorted(names)
    }


def combine(volumes: dict[str, dict[str, Any]]) -> list[dict[str, Any]]:
    """Scores per threshold over all volumes, weighted by scored voxels (module docstring).

    Only thresholds every volume has are combined.
    """
    tables = [{round(r["threshold"], 6): r for r in v["per_threshold"]} for v in volumes.values()]
    weights = np.array([v["voxels"] for v in volumes.values()], dtype=np.float64)
    weights /= weights.sum()
    shared = sorted(set.intersection(*(set(t) for t in tables))) if tables else []
    rows = []
    for threshold in shared:
        row: dict[str, Any] = {"threshold": threshold, "dataset": tables[0][threshold]["dataset"]}
        for key in ("voi_split", "voi_merge", "voi", "arand"):
            row[key] = float(sum(w * t[threshold][key] for w, t in zip(weights, tables)))
        rows.append(row)
    return rows


def best_of(rows: list[dict[str, Any]]) -> dict[str, Any]:
    return dict(min(rows, key=lambda r: (r["voi"], r["arand"], r["threshold"])))


def plot_scores(
    path: Path,
    per_threshold: list[dict[str, Any]],
    best: dict[str, Any],
    chosen_on: str,
    volumes: dict[str, dict[str, Any]],
) -> Path | None:
    """VOI split/merge and adapted Rand error against threshold, as a PNG (atomically).

    None when matplotlib is not installed.
    """
    try:
        from matplotlib.figure import Figure
    except ImportError:
        return None
    # A bare Figure renders through Agg without pyplot's global state or a display.
    figure = Figure(figsize=(10, 4), layout="constrained")
    voi_axes, rand_axes = figure.subplots(1, 2)
    x = [r["threshold"] for r in per_threshold]
    voi_axes.plot(x, [r["voi_split"] for r in per_threshold], "o-", label="VOI split")
    voi_axes.plot(x, [r["voi_merge"] for r in per_threshold], "s-", label="VOI merge")
    voi_axes.plot(x, [r["voi"] for r in per_threshold], "k--", label="VOI", linewidth=1)
    rand_axes.plot(x, [r["arand"] for r in per_threshold], "o-", color="C2", label="ARAND")
    for axes in (voi_axes, rand_axes):
        axes.axvline(best["threshold"], color="grey", linestyle=":", linewidth=1)
        axes.set_xlabel("agglomeration threshold")
        axes.grid(alpha=0.3)
        axes.legend()
    voi_axes.set_ylabel("bits")
    rand_axes.set_ylabel("adapted Rand error")
    rand_axes.set_ylim(bottom=0)
    where = "all volumes" if len(volumes) > 1 else next(iter(volumes))
    figure.suptitle(
        f"{where}: threshold {best['threshold']:.2f} chosen on {chosen_on} (VOI "
        f"{best['voi']:.3f}, ARAND {best['arand']:.3f})"
    )
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    try:
        figure.savefig(tmp, format="png", dpi=100)
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return path
