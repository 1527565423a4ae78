"""Validation during training: the current weights predict, segment and score `val/`.

At each validation point the training run's model, on its own device, predicts every
validation volume block by block (`engine.predict.predictor.Predictor`), the prediction is
segmented at the run's thresholds by the segment workers
(`engine.segment.segmentation.segment_every_block`: fragments, agglomeration, relabelling over the
same blocks as a segment run) and scored by `engine.evaluate.evaluation.score_volume`. One
implementation: a predict, segment and evaluate run of the same checkpoint on the same
volume gives the same numbers. Over several volumes the scores are combined as evaluate
combines them (weighted by scored voxels); the point's threshold has the lowest VOI.

The latest validation's predictions and segmentations stay in `RUN_DIR/validation/` to
look at; each validation replaces them.
"""

from __future__ import annotations

import contextlib
import logging
import os
import shutil
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from engine.project.config import ProjectConfig
from engine.train.validation import ValidationResult

logger = logging.getLogger(__name__)

VALIDATION_DIR = "validation"


class Validator:
    """Predicts, segments and scores the validation volumes with a model in memory."""

    def __init__(
        self, config: ProjectConfig, volumes: list[Path], run_dir: Path, device: Any
    ) -> None:
        self.config = config
        self.volumes = volumes
        self.folder = run_dir / VALIDATION_DIR
        self.device = device

    def __call__(self, model: Any, step: int) -> ValidationResult:
        import torch

        from engine.evaluate import evaluation as evaluate
        from engine.predict import plan as predict_plan
        from engine.predict import predictor as predict
        from engine.segment import segmentation as segment

        start = time.monotonic()
        config = self.config
        # Each validation starts from nothing: a segmentation's RAG must not keep the
        # fragments and edges of the weights before.
        shutil.rmtree(self.folder, ignore_errors=True)
        plans = predict_plan.plan_predictions(self.volumes, config, self.folder / "predictions")
        hashes = {
            "checkpoint_sha256": f"training iteration {step}",
            "config_sha256": predict_plan.settings_hash(config),
        }
        was_training = model.training
        model.eval()
        try:
            with torch.inference_mode():
                for plan in plans:
                    predict_plan.prepare_outputs(plan, config, hashes, overwrite=True)
                    worker = predict.Predictor(config, plan, model, self.device)
                    predict.predict_every_block(worker)
        finally:
            model.train(was_training)
        predicted = time.monotonic()
        segment_plans = segment.plan_segments(
            config,
            [p.output for p in plans],
            self.folder,
            output_dir=self.folder / segment.SEGMENTATION,
        )
        scores: dict[str, dict[str, Any]] = {}
        with _quiet():
            for plan, segment_plan in zip(plans, segment_plans):
                segment.prepare_outputs(segment_plan, config, overwrite=True)
                segment.segment_every_block(config, segment_plan)
                target = evaluate.Target(
                    name=plan.source.stem,
                    segmentation=segment_plan.output,
                    source=plan.source,
                    thresholds=evaluate.segmentation_datasets(segment_plan.output),
                )
                scores[target.name] = evaluate.score_volume(target)
        segmented = time.monotonic()
        per_threshold = evaluate.combine(scores)
        best = evaluate.best_of(per_threshold)
        volumes = {}
        for name, volume in scores.items():
            row = next(r for r in volume["per_threshold"] if r["threshold"] == best["threshold"])
            volumes[name] = {
                **{k: row[k] for k in ("voi_split", "voi_merge", "voi", "arand")},
                "voxels": volume["voxels"],
            }
        seconds = time.monotonic() - start
        logger.info(
            "validation at %d: VOI %.4f (split %.4f, merge %.4f), ARAND %.4f at threshold "
            "%.2f; %.1f s (predict %.1f, segment and score %.1f)",
            step,
            best["voi"],
            best["voi_split"],
            best["voi_merge"],
            best["arand"],
            best["threshold"],
            seconds,
            predicted - start,
            segmented - predicted,
        )
        return ValidationResult(
            step=step,
            voi_split=float(best["voi_split"]),
            voi_merge=float(best["voi_merge"]),
            voi=float(best["voi"]),
            arand=float(best["arand"]),
            threshold=float(best["threshold"]),
            volumes=volumes,
            per_threshold=per_threshold,
            seconds=seconds,
        )


@contextlib.contextmanager
def _quiet() -> Iterator[None]:
    """Keep the training log readable: waterz prints hundreds of lines per segmentation
    (to stdout, which the segment code moves to stderr), and the segment and evaluate
    modules log every block and threshold. Their errors are raised, not printed."""
    names = ("engine.segment.segmentation", "engine.evaluate.evaluation")
    loggers = [logging.getLogger(n) for n in names]
    levels = [lg.level for lg in loggers]
    for lg in loggers:
        lg.setLevel(logging.WARNING)
    sys.stdout.flush()
    sys.stderr.flush()
    saved = [os.dup(1), os.dup(2)]
    devnull = os.open(os.devnull, os.O_WRONLY)
    try:
        os.dup2(devnull, 1)
        os.dup2(devnull, 2)
        yield
    finally:
        sys.stdout.flush()
        sys.stderr.flush()
        os.dup2(saved[0], 1)
        os.dup2(saved[1], 2)
        for fd in (*saved, devnull):
            os.close(fd)
        for lg, level in zip(loggers, levels):
            lg.setLevel(level)
