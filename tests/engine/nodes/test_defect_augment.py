"""Defect augmentation of serial sections: each defect at about its probability, the
labels untouched; wired into training for anisotropic data only."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import gunpowder as gp
import numpy as np
import pytest
from funlib.geometry import Coordinate, Roi
from scipy import stats

from engine.data import volume as vol
from engine.data.synth import synthesize, synthesize_artifacts
from engine.errors import InputError
from engine.nodes import defect_augment
from engine.project.config import from_preset
from engine.train.pipeline import build_training_pipeline

VOXEL = Coordinate(40, 4, 4)
SECTIONS, SIDE = 40, 24
PROBABILITIES = {"missing": 0.15, "low_contrast": 0.1, "artifact": 0.15, "deform": 0.1}
# No defects but those a test asks for (the cremi preset has the paper's).
NONE = {f"prob_{k}": 0.0 for k in PROBABILITIES}


class _Stack(gp.BatchProvider):  # type: ignore[misc]
    """A fixed stack: raw in [0.2, 1] (never 0), labels; served as they are."""

    def __init__(self, raw: gp.ArrayKey, labels: gp.ArrayKey, data: np.ndarray) -> None:
        self.raw, self.labels, self.data = raw, labels, data

    def setup(self) -> None:
        roi = Roi((0, 0, 0), Coordinate(self.data.shape) * VOXEL)
        self.provides(self.raw, gp.ArraySpec(roi=roi, voxel_size=VOXEL, interpolatable=True))
        self.provides(self.labels, gp.ArraySpec(roi=roi, voxel_size=VOXEL, interpolatable=False))

    def provide(self, request: gp.BatchRequest) -> gp.Batch:
        batch = gp.Batch()
        for key in request.array_specs:
            spec = self.spec[key].copy()
            spec.roi = request[key].roi
            window = self.data[(spec.roi / VOXEL).to_slices()]
            data = window.copy() if key == self.raw else (window * 1000).astype(np.uint64)
            batch[key] = gp.Array(data, spec)
        return batch


def _classify(before: np.ndarray, after: np.ndarray, scale: float) -> str:
    if np.array_equal(before, after):
        return "none"
    if not after.any():
        return "missing"
    # (x - m) * scale + m, for the mean m of the section as read (wider with a fold)
    if np.ptp(after - before * scale) < 1e-5:
        return "low_contrast"
    if (after == 0).any():
        return "deform"  # a fold blackens a line; nothing else yields exact zeros here
    return "artifact"


def test_each_defect_at_about_its_probability_labels_untouched(tmp_path: Path) -> None:
    # Artifacts that cover all of a section (alpha 255): a pasted one always shows
    # within the window checked (synthetic smudges may miss it when a fold widens it).
    with vol.staged(tmp_path / "artifacts.zarr") as tmp:
        for name, value in (("raw", 30), ("mask", 255)):
            array = vol.create_array(tmp, name, (4, 128, 128), np.uint8, VOXEL, (0, 0, 0))
            array[:] = value
    probabilities = {f"prob_{k}": p for k, p in PROBABILITIES.items()}
    config = from_preset(
        "cremi", {"train": {"augment": {**probabilities, "artifacts": "artifacts.zarr"}}}
    )
    rng = np.random.default_rng(0)
    margin = config.train.augment.deformation_strength
    data = rng.uniform(0.2, 1.0, (SECTIONS, SIDE + 2 * margin, SIDE + 2 * margin))
    data = data.astype(np.float32)
    raw, labels = gp.ArrayKey("STACK_RAW"), gp.ArrayKey("STACK_LABELS")
    node = defect_augment(raw, config, (SECTIONS, SIDE, SIDE), tmp_path)
    assert node is not None
    pipeline = _Stack(raw, labels, data) + node
    roi = Roi((0, margin * 4, margin * 4), Coordinate(SECTIONS, SIDE, SIDE) * VOXEL)
    before = data[(roi / VOXEL).to_slices()]
    counts = dict.fromkeys([*PROBABILITIES, "none"], 0)
    batches = 12
    with gp.build(pipeline):
        for _ in range(batches):
            request = gp.BatchRequest()
            request[raw] = gp.ArraySpec(roi=roi)
            request[labels] = gp.ArraySpec(roi=roi)
            batch = pipeline.request_batch(request)
            np.testing.assert_array_equal(batch[labels].data, (before * 1000).astype(np.uint64))
            for z in range(SECTIONS):
                kind = _classify(before[z], batch[raw].data[z], config.train.augment.contrast_scale)
                counts[kind] += 1
    total = SECTIONS * batches
    for kind, p in PROBABILITIES.items():
        # Two-sided binomial test at 0.1%: fails for a wrong rate, rarely by chance.
        assert stats.binomtest(counts[kind], total, p).pvalue > 1e-3, (kind, counts)
    assert counts["none"] == total - sum(counts[k] for k in PROBABILITIES)


def _volume(path: Path, voxel_size: tuple[int, int, int] = (40, 4, 4)) -> Path:
    """Raw (never 0) with a margin around the labels wider than the samples' context:
    a sample's raw never reaches the zero padding."""
    raw, labels = synthesize((20, 96, 96), voxel_size, seed=1)
    inner = (slice(4, 16), slice(24, 72), slice(24, 72))
    offset = [s.start * v for s, v in zip(inner, voxel_size)]
    with vol.staged(path) as tmp:
        vol.create_array(tmp, vol.RAW, raw.shape, np.uint8, voxel_size, (0, 0, 0))[:] = np.maximum(
            raw, 1
        )
        cut = labels[inner]
        vol.create_array(tmp, vol.LABELS, cut.shape, np.uint64, voxel_size, offset)[:] = cut
        vol.create_array(tmp, vol.MASK, cut.shape, np.uint8, voxel_size, offset)[:] = 1
    return path


def _first_batch(preset: str, volume: Path, voxel_size: list[int], **augment: object) -> Any:
    config = from_preset(
        preset,
        {
            "data": {"voxel_size": voxel_size},
            "preprocess": {"min_masked": 1.0},
            "train": {"augment": {"elastic": False, "intensity_shift": [0, 0], **NONE, **augment}},
        },
    )
    pipeline = build_training_pipeline(
        config,
        [volume],
        input_shape=(8, 40, 40),
        lsds_shape=(4, 20, 20),
        affs_shape=(4, 20, 20),
        seed=1,
        num_workers=0,
    )
    with pipeline:
        return pipeline.next_batch()


def _lost_sections(batch: Any) -> int:
    return int((batch["raw"][0, 0] == -1.0).all(axis=(1, 2)).sum())


def test_training_loses_sections_only_of_anisotropic_data(tmp_path: Path) -> None:
    aniso = _volume(tmp_path / "train" / "a.zarr")
    lost = _first_batch("cremi", aniso, [40, 4, 4], prob_missing=1.0)
    assert _lost_sections(lost) == 8 and lost["labels"].any()
    assert _lost_sections(_first_batch("cremi", aniso, [40, 4, 4], prob_missing=0.0)) == 0
    # Isotropic data has no sections to lose: the same setting changes nothing.
    iso = _volume(tmp_path / "train" / "i.zarr", (8, 8, 8))
    assert _lost_sections(_first_batch("tiny", iso, [8, 8, 8], prob_missing=1.0)) == 0


def test_artifact_volume_from_the_project_and_its_refusals(tmp_path: Path) -> None:
    volume = _volume(tmp_path / "train" / "a.zarr")
    raw, alpha = synthesize_artifacts(4, 120, seed=3)
    with vol.staged(tmp_path / "artifacts.zarr") as tmp:
        vol.create_array(tmp, "raw", raw.shape, np.uint8, (40, 4, 4), (0, 0, 0))[:] = raw
        vol.create_array(tmp, "mask", raw.shape, np.uint8, (40, 4, 4), (0, 0, 0))[:] = alpha
    batch = _first_batch("cremi", volume, [40, 4, 4], prob_artifact=1.0, artifacts="artifacts.zarr")
    assert batch["raw"].shape == (1, 1, 8, 40, 40)
    with pytest.raises(InputError, match="does not exist"):
        _first_batch("cremi", volume, [40, 4, 4], prob_artifact=1.0, artifacts="nope.zarr")


def test_probabilities_must_leave_room_for_one_defect_per_section() -> None:
    with pytest.raises(InputError, match="keep the sum <= 1"):
        from_preset("cremi", {"train": {"augment": {"prob_missing": 0.6, "prob_artifact": 0.6}}})


def test_synthetic_artifacts_have_soft_masks() -> None:
    raw, alpha = synthesize_artifacts(3, 64, seed=0)
    assert raw.shape == alpha.shape == (3, 64, 64)
    for section in alpha:
        assert section.max() == 255 and (section == 0).mean() > 0.3
        assert ((section > 0) & (section < 255)).any()  # a soft edge
