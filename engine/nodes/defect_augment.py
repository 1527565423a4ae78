"""Gunpowder node: defect augmentation of serial sections, as the LSD paper trained CREMI.

gp.DefectAugment does what the paper did (funkelab/lsd_experiments, cremi setups: missing
sections set to 0, low-contrast sections, artifacts alpha-blended from a separate source,
and folds); this module gives it its artifact source, built from a volume of artifact
sections (a zarr container with `raw` and an alpha `mask`, both uint8) or, without one,
from synthetic smudges (engine.data.synth.synthesize_artifacts).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import gunpowder as gp
import numpy as np
from funlib.geometry import Coordinate, Roi

from engine.errors import InputError
from engine.nodes.random_location import MaskedRandomLocation
from engine.project.config import ProjectConfig

logger = logging.getLogger(__name__)

ARTIFACTS_RAW = "raw"
ARTIFACTS_MASK = "mask"
# Synthetic artifact sections: how many, and how much larger than a sample in y and x
# (so random locations vary).
_SYNTH_SECTIONS = 16
_SYNTH_MARGIN = 2
# As the paper's artifact source: a pasted window holds at least this much artifact.
_MIN_ARTIFACT = 0.05
_MAX_DRAWS = 10_000


class SectionArraySource(gp.BatchProvider):  # type: ignore[misc]
    """Two in-memory or zarr arrays (uint8) of artifact sections, as float32 in [0, 1].

    Provides:
        artifacts: the artifact intensities, float32 in [0, 1].
        mask: the alpha mask to blend them with, float32 in [0, 1].

    Both over `shape * voxel_size` from the origin; slicing reads only what a request
    needs (zarr arrays are read in the calling process: safe in forked batch workers).
    """

    def __init__(
        self,
        artifacts: gp.ArrayKey,
        mask: gp.ArrayKey,
        raw_data: Any,
        mask_data: Any,
        voxel_size: Coordinate,
    ) -> None:
        self.artifacts = artifacts
        self.mask = mask
        self.raw_data = raw_data
        self.mask_data = mask_data
        self.voxel_size = voxel_size

    def setup(self) -> None:
        roi = Roi((0,) * len(self.voxel_size), Coordinate(self.raw_data.shape) * self.voxel_size)
        for key in (self.artifacts, self.mask):
            self.provides(
                key,
                gp.ArraySpec(
                    roi=roi, voxel_size=self.voxel_size, interpolatable=True, dtype=np.float32
                ),
            )

    def provide(self, request: gp.BatchRequest) -> gp.Batch:
        batch = gp.Batch()
        for key, data in ((self.artifacts, self.raw_data), (self.mask, self.mask_data)):
            if key not in request:
                continue
            spec = self.spec[key].copy()
            spec.roi = request[key].roi
            index = (spec.roi / self.voxel_size).to_slices()
            values = np.asarray(data[index], dtype=np.float32) / 255.0
            batch[key] = gp.Array(values, spec)
        return batch


class DefectAugment(gp.DefectAugment):  # type: ignore[misc]
    """gp.DefectAugment whose artifact source is torn down with it.

    Reads and updates the intensities (one section at a time along `axis`), read
    `deformation_strength` voxels wider in-plane when a section folds; requests the
    artifacts and their mask from its own artifact pipeline.

    Two fixes to gunpowder 1.4.4's node: its `prepare` computes the wider request a
    fold needs but does not return it (so the fold's flow field, made for the wider
    section, does not fit the section it gets), and it tears its artifact pipeline down
    with `teardown()`, which gp.Pipeline does not have (`internal_teardown`).
    """

    def prepare(self, request: gp.BatchRequest) -> gp.BatchRequest:
        super().prepare(request)  # draws each section's defect, prepares the folds
        deps = gp.BatchRequest()
        spec = request[self.intensities].copy()
        if "deformed_slice" in self.slice_to_augmentation.values():
            voxel_size = self.spec[self.intensities].voxel_size
            growth = Coordinate(
                0 if d == self.axis else v * self.deformation_strength
                for d, v in enumerate(voxel_size)
            )
            spec.roi = spec.roi.grow(growth, growth)
        deps[self.intensities] = spec
        return deps

    def teardown(self) -> None:
        if self.artifact_source is not None:
            self.artifact_source.internal_teardown()


def defect_augment(
    raw: gp.ArrayKey, config: ProjectConfig, input_shape: Sequence[int], project: Path
) -> gp.BatchFilter | None:
    """gp.DefectAugment of `raw` (float in [0, 1]) along z with the probabilities of
    `train.augment`, or None when they are all 0, augmentation is off or the data is not
    anisotropic (isotropic volumes have no sections to lose). Artifacts come from the
    container `train.augment.artifacts` (relative to `project`), or are synthetic."""
    augment = config.train.augment
    probabilities = (
        augment.prob_missing,
        augment.prob_low_contrast,
        augment.prob_artifact,
        augment.prob_deform,
    )
    if not (augment.enabled and config.anisotropic() and any(probabilities)):
        return None
    voxel_size = Coordinate(config.data.voxel_size)
    # A fold reads this much more around the sample in y and x.
    grown = [s + 2 * augment.deformation_strength for s in input_shape[-2:]]
    section_shape = (grown[0], grown[1])
    artifacts = None
    if augment.artifacts:
        artifacts = Path(augment.artifacts).expanduser()
        artifacts = artifacts if artifacts.is_absolute() else project / artifacts
    source = None
    keys: dict[str, gp.ArrayKey | None] = {"artifacts": None, "artifacts_mask": None}
    if augment.prob_artifact > 0:
        artifact_key, mask_key = gp.ArrayKey("DEFECT_ARTIFACTS"), gp.ArrayKey("DEFECT_ALPHA")
        raw_data, mask_data = _artifact_arrays(artifacts, section_shape)
        source = (
            SectionArraySource(artifact_key, mask_key, raw_data, mask_data, voxel_size)
            + MaskedRandomLocation(mask_key, _MIN_ARTIFACT, "the artifact sections", _MAX_DRAWS)
            + gp.SimpleAugment(transpose_only=[1, 2])
        )
        keys = {"artifacts": artifact_key, "artifacts_mask": mask_key}
    return DefectAugment(
        raw,
        prob_missing=augment.prob_missing,
        prob_low_contrast=augment.prob_low_contrast,
        prob_artifact=augment.prob_artifact,
        prob_deform=augment.prob_deform,
        contrast_scale=augment.contrast_scale,
        artifact_source=source,
        deformation_strength=augment.deformation_strength,
        axis=0,
        **keys,
    )


def _artifact_arrays(artifacts: Path | None, section_shape: tuple[int, int]) -> tuple[Any, Any]:
    if artifacts is None:
        from engine.data.synth import synthesize_artifacts

        size = _SYNTH_MARGIN * max(section_shape)
        logger.info("defect augmentation: %d synthetic artifact sections", _SYNTH_SECTIONS)
        return synthesize_artifacts(_SYNTH_SECTIONS, size, seed=0)
    import zarr

    where = f"train.augment.artifacts {artifacts}"
    if not artifacts.is_dir():
        raise InputError(f"{where} does not exist: give a zarr container with raw and mask")
    arrays = []
    for name in (ARTIFACTS_RAW, ARTIFACTS_MASK):
        try:
            array = zarr.open_array(str(artifacts / name), mode="r")
        except Exception:  # zarr raises several types for a missing or damaged array
            raise InputError(f"{where} has no {name} array: it needs raw and mask") from None
        if array.dtype != np.uint8 or array.ndim != 3:
            raise InputError(
                f"{where}/{name} must be uint8 sections (z, y, x), not {array.dtype} {array.shape}"
            )
        arrays.append(array)
    raw, mask = arrays
    if raw.shape != mask.shape:
        raise InputError(f"{where}: raw {raw.shape} and mask {mask.shape} differ in shape")
    if any(s < n for s, n in zip(raw.shape[1:], section_shape)):
        raise InputError(
            f"{where} sections are {list(raw.shape[1:])} voxels, smaller than a training "
            f"sample's {list(section_shape)}"
        )
    return raw, mask
