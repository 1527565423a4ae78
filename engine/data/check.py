"""`lsdctl data check`: what each project volume holds, and every problem with it.

A problem is an `error` when the volume cannot be used for what its split is for
(training and validation need raw, labels and labelled voxels at the project's voxel
size), and a `warning` when it can, but probably not as the user intends: e.g. a
validation or test volume that shares voxels with a training volume (known from the
volumes' provenance), whose scores would be optimistic.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np

from engine.data import provenance, volume
from engine.project.config import ProjectConfig
from engine.project.layout import LABELLED_SPLITS, SPLIT_NAMES, SPLITS, Project


@dataclass
class Problem:
    severity: Literal["error", "warning"]
    message: str


@dataclass
class ArrayInfo:
    shape: list[int]
    dtype: str
    voxel_size: list[int]
    offset: list[int]


@dataclass
class VolumeReport:
    name: str
    split: str
    path: str
    arrays: dict[str, ArrayInfo] = field(default_factory=dict)
    label_count: int | None = None
    labelled_fraction: float | None = None
    mask_coverage: float | None = None
    provenance: dict[str, Any] | None = None  # see engine.data.provenance; None before it
    problems: list[Problem] = field(default_factory=list)

    @property
    def usable(self) -> bool:
        return not any(p.severity == "error" for p in self.problems)

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["usable"] = self.usable
        return data

    def error(self, message: str) -> None:
        self.problems.append(Problem("error", message))

    def warn(self, message: str) -> None:
        self.problems.append(Problem("warning", message))


# (split checked, split it must not share voxels with): the warning goes on the first.
_DISJOINT = (("val", "train"), ("test", "train"), ("test", "val"))


def check_project(project: Project) -> list[VolumeReport]:
    config = project.load_config()
    reports = [
        check_volume(path, split, config) for split in SPLITS for path in project.volumes(split)
    ]
    _check_overlaps(reports)
    return reports


def _check_overlaps(reports: list[VolumeReport]) -> None:
    origins = [(r, provenance.parse(r.provenance)) for r in reports]
    known = [(r, o) for r, o in origins if o is not None]
    for split, other_split in _DISJOINT:
        for report, origin in known:
            if report.split != split:
                continue
            for other, other_origin in known:
                if other.split != other_split:
                    continue
                found = provenance.overlap(origin, other_origin)
                if found is not None:
                    report.warn(
                        f"{split}/{report.name} overlaps {other_split}/{other.name} "
                        f"({found.detail}): {SPLIT_NAMES[split]} scores would be optimistic; "
                        f"{found.remedy}"
                    )


def check_volume(path: Path, split: str, config: ProjectConfig) -> VolumeReport:
    report = VolumeReport(name=path.stem, split=split, path=str(path))
    origin = provenance.read(path)
    report.provenance = origin.model_dump(mode="json") if origin is not None else None
    arrays = {}
    for name in volume.array_names(path) if path.is_dir() else []:
        try:
            arrays[name] = volume.open_array(path, name)
        except Exception as exc:  # a damaged array is a finding, not a crash
            report.error(f"array {name} cannot be opened: {exc}")
    for name, array in arrays.items():
        report.arrays[name] = ArrayInfo(
            shape=list(array.shape),
            dtype=str(array.dtype),
            voxel_size=list(array.voxel_size),
            offset=list(array.offset),
        )
    raw = arrays.get(volume.RAW)
    labels = arrays.get(volume.LABELS)
    mask = arrays.get(volume.MASK)
    training = split == "train"
    needs_labels = split in LABELLED_SPLITS
    if raw is None:
        report.error("no raw array: re-import the volume with `lsdctl data import`")
    if labels is None:
        if needs_labels:
            report.error(
                f"no labels: {SPLIT_NAMES[split]} volumes need neuron ids (re-import with "
                "--labels, or into test/)"
            )
        else:
            report.warn("no labels: it can be predicted and segmented but not evaluated")
    _check_geometry(report, config, raw, labels, mask)
    if raw is not None:
        _check_raw(report, raw, config, training)
    if labels is not None:
        _check_labels(report, labels, mask, needs_labels, training, config)
    return report


def _check_geometry(
    report: VolumeReport, config: ProjectConfig, raw: Any, labels: Any, mask: Any
) -> None:
    dims = config.data.dims
    expected = tuple(config.data.voxel_size)
    present = [
        (n, a)
        for n, a in ((volume.RAW, raw), (volume.LABELS, labels), (volume.MASK, mask))
        if a is not None
    ]
    for name, array in present:
        if len(array.shape) != dims:
            report.error(f"{name} is {len(array.shape)}D but the project is {dims}D (data.dims)")
    sizes = {tuple(a.voxel_size) for _, a in present}
    if len(sizes) > 1:
        listing = ", ".join(f"{n} {list(a.voxel_size)}" for n, a in present)
        report.error(f"arrays disagree on the voxel size ({listing}): re-import the volume")
    elif sizes and sizes != {expected}:
        (found,) = sizes
        report.error(
            f"voxel size {list(found)} nm differs from the project's data.voxel_size "
            f"{list(expected)}: re-import with --voxel-size, or change the project's "
            "(`lsdctl config set NAME data.voxel_size ...`, or init it with a fitting preset)"
        )
    if raw is not None and labels is not None and len(raw.shape) == len(labels.shape):
        if not raw.roi.contains(labels.roi):
            report.error(
                f"labels ROI {labels.roi} is not inside the raw ROI {raw.roi}: re-import both "
                "with the same offset"
            )
    if labels is not None and mask is not None and labels.roi != mask.roi:
        report.error(f"labels_mask ROI {mask.roi} differs from the labels ROI {labels.roi}")
    if report.split == "train" and raw is not None and labels is not None:
        _check_context(report, config, raw, labels)


def _check_context(report: VolumeReport, config: ProjectConfig, raw: Any, labels: Any) -> None:
    """Warn when raw does not reach the model's context beyond the labels: a sample at
    the labels' border then sees zeros where the network expects EM (the padded CREMI
    samples exist to give that context)."""
    # Raw and labels of one region is the common case and the user's choice: only a
    # padded volume (raw larger) promises context, and is checked for enough of it.
    if len(raw.shape) != len(labels.shape) or raw.roi == labels.roi:
        return
    if not raw.roi.contains(labels.roi):
        return
    output = config.model.output_shape or config.model.input_shape
    need = [(i - o) // 2 for i, o in zip(config.model.input_shape, output)]
    voxel = list(raw.voxel_size)
    below = [(lb - rb) // v for lb, rb, v in zip(labels.roi.begin, raw.roi.begin, voxel)]
    above = [(re - le) // v for re, le, v in zip(raw.roi.end, labels.roi.end, voxel)]
    have = [min(b, a) for b, a in zip(below, above)]
    if len(have) == len(need) and any(h < n for h, n in zip(have, need)):
        report.warn(
            f"raw reaches {have} voxels beyond the labels on its narrowest sides, the model "
            f"reads {need} beyond its output: samples at the labels' "
            "border see zero padding instead of EM (import raw with margin around the "
            "labels, as CREMI's padded samples have, to use all labels fully)"
        )


def _check_raw(report: VolumeReport, raw: Any, config: ProjectConfig, training: bool) -> None:
    if raw.dtype != np.uint8:
        report.error(f"raw is {raw.dtype}, not uint8: re-import it (data import scales it)")
        return
    low, high = 255, 0
    for block in volume.iter_blocks(raw.shape, _scan_block(raw.shape)):
        data = np.asarray(raw.data[block])
        low, high = min(low, int(data.min())), max(high, int(data.max()))
    if low == high:
        report.error(f"raw is constant ({low}): nothing to learn from")
    input_shape = config.model.input_shape
    if (
        training
        and len(raw.shape) == len(input_shape)
        and any(s < i for s, i in zip(raw.shape, input_shape))
    ):
        report.warn(
            f"raw {list(raw.shape)} is smaller than the model input {input_shape}: "
            "training pads it, which wastes most of each sample"
        )


def _check_labels(
    report: VolumeReport,
    labels: Any,
    mask: Any,
    needs_labels: bool,
    training: bool,
    config: ProjectConfig,
) -> None:
    """`needs_labels`: the split needs labels (empty ones are errors); `training`: it is
    sampled (a thin mask is a warning)."""
    ids: set[int] = set()
    labelled = masked = 0
    total = int(np.prod(labels.shape))
    for block in volume.iter_blocks(labels.shape, _scan_block(labels.shape)):
        data = np.asarray(labels.data[block])
        ids.update(int(i) for i in np.unique(data) if i != 0)
        labelled += int(np.count_nonzero(data))
        if mask is not None and mask.shape == labels.shape:
            masked += int(np.count_nonzero(np.asarray(mask.data[block])))
    report.label_count = len(ids)
    report.labelled_fraction = labelled / total if total else 0.0
    if mask is not None and mask.shape == labels.shape:
        report.mask_coverage = masked / total if total else 0.0
    if not ids:
        (report.error if needs_labels else report.warn)("labels are all 0 (no neuron ids)")
    if report.mask_coverage is not None:
        if report.mask_coverage == 0:
            (report.error if needs_labels else report.warn)(
                "labels_mask is all 0: no voxel counts as labelled"
            )
        elif training and report.mask_coverage < config.preprocess.min_masked:
            report.warn(
                f"labels_mask covers {report.mask_coverage:.0%} of the volume, less than "
                f"preprocess.min_masked ({config.preprocess.min_masked:.0%}): few samples qualify"
            )


def _scan_block(shape: tuple[int, ...]) -> tuple[int, ...]:
    return volume.default_chunks(shape)
