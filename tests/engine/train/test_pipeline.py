"""The training pipeline end to end: real gunpowder, real zarr volumes from engine.data.synth."""

from __future__ import annotations

import shutil
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import gunpowder as gp
import numpy as np
import pytest
from funlib.persistence import Array
from numpy.lib.stride_tricks import sliding_window_view
from scipy import ndimage

from engine.data.synth import synthesize
from engine.data.volume import write_volume
from engine.errors import InputError
from engine.nodes import ElasticAugment, elastic_augment
from engine.nodes.elastic_augment import interpolate_linear, sample_nearest, upsample_linear
from engine.project.config import ProjectConfig, from_preset
from engine.targets import compute_lsds
from engine.train.pipeline import (
    TrainingKeys,
    build_training_pipeline,
    normalize_raw,
    transposable_axes,
)

SHAPE_3D = (24, 48, 48)  # tiny preset, 8 nm voxels
SHAPE_2D = (128, 128)  # tiny2d preset, 4 nm voxels
SHAPE_ANISO = (20, 96, 96)  # cremi preset, 40 x 4 x 4 nm voxels


def config(preset: str, augment: bool = True, **train: Any) -> ProjectConfig:
    overrides: dict[str, Any] = {"train": {"batch_size": 2, "augment": {"enabled": augment}}}
    overrides["train"].update(train)
    return from_preset(preset, overrides)


def make_volume(
    path: Path,
    shape: Sequence[int],
    voxel_size: Sequence[int],
    seed: int = 0,
    mask: np.ndarray | None = None,
    id_offset: int = 0,
    id_scale: int = 1,
) -> tuple[np.ndarray, np.ndarray]:
    raw, labels = synthesize(shape, voxel_size, seed=seed)
    labels = labels * np.uint64(id_scale) + np.uint64(id_offset)
    write_volume(path, raw, labels, voxel_size, mask=mask)
    return raw, labels


@pytest.fixture(scope="module")
def volumes(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("volumes")
    make_volume(root / "v3d.zarr", SHAPE_3D, (8, 8, 8))
    make_volume(root / "v2d.zarr", SHAPE_2D, (4, 4))
    make_volume(root / "v2d_b.zarr", SHAPE_2D, (4, 4), seed=1, id_offset=10_000)
    make_volume(root / "aniso.zarr", SHAPE_ANISO, (40, 4, 4))
    return {p.stem: p for p in root.iterdir()}


def draw(
    cfg: ProjectConfig,
    paths: Sequence[Path],
    batches: int = 1,
    *,
    input_shape: Sequence[int],
    lsds_shape: Sequence[int] | None,
    affs_shape: Sequence[int] | None,
    seed: int | None = 0,
    num_workers: int = 0,
) -> list[dict[str, np.ndarray]]:
    pipeline = build_training_pipeline(
        cfg,
        paths,
        input_shape=input_shape,
        lsds_shape=lsds_shape,
        affs_shape=affs_shape,
        seed=seed,
        num_workers=num_workers,
    )
    with pipeline:
        return [pipeline.next_batch() for _ in range(batches)]


def affinities(labels: np.ndarray, offset: Sequence[int]) -> tuple[np.ndarray, np.ndarray]:
    """(affinity, valid) of each voxel to voxel + offset, where that lies in the array."""
    shape = labels.shape
    here = tuple(slice(max(-o, 0), n - max(o, 0)) for o, n in zip(offset, shape))
    there = tuple(slice(max(o, 0), n - max(-o, 0)) for o, n in zip(offset, shape))
    aff = np.zeros(shape, dtype=bool)
    valid = np.zeros(shape, dtype=bool)
    aff[here] = (labels[here] == labels[there]) & (labels[here] != 0)
    valid[here] = True
    return aff, valid


# ---- shapes and dtypes ----------------------------------------------------------------
Shape = tuple[int, ...]
GEOMETRIES: dict[str, dict[int, tuple[Shape, Shape | None, Shape | None]]] = {
    # name: (input, lsds, affs) per dimensionality
    "mtlsd": {3: ((20, 20, 20), (8, 8, 8), (8, 8, 8)), 2: ((60, 60), (24, 24), (24, 24))},
    "autocontext": {3: ((20, 20, 20), (12, 12, 12), (6, 6, 6)), 2: ((60, 60), (40, 40), (20, 20))},
    "lsd": {3: ((20, 20, 20), (8, 8, 8), None), 2: ((60, 60), (24, 24), None)},
    "aff": {3: ((20, 20, 20), None, (8, 8, 8)), 2: ((60, 60), None, (24, 24))},
}


@pytest.mark.parametrize("kind", list(GEOMETRIES))
@pytest.mark.parametrize(("preset", "volume"), [("tiny", "v3d"), ("tiny2d", "v2d")])
def test_shapes_and_dtypes(volumes: dict[str, Path], preset: str, volume: str, kind: str) -> None:
    cfg = config(preset)
    dims = cfg.data.dims
    input_shape, lsds_shape, affs_shape = GEOMETRIES[kind][dims]
    (batch,) = draw(
        cfg,
        [volumes[volume]],
        input_shape=input_shape,
        lsds_shape=lsds_shape,
        affs_shape=affs_shape,
    )
    check_batch(cfg, batch, input_shape, lsds_shape, affs_shape)


@pytest.mark.slow
def test_anisotropic_augmentations(volumes: dict[str, Path]) -> None:
    """CREMI-like: misalignment, in-plane transposes, section-wise intensities."""
    cfg = config("cremi")
    assert cfg.anisotropic() and cfg.train.augment.prob_slip > 0
    shapes = ((12, 60, 60), (8, 40, 40), (4, 20, 20))
    batches = draw(
        cfg,
        [volumes["aniso"]],
        2,
        input_shape=shapes[0],
        lsds_shape=shapes[1],
        affs_shape=shapes[2],
    )
    for batch in batches:
        check_batch(cfg, batch, *shapes)


def check_batch(
    cfg: ProjectConfig,
    batch: dict[str, np.ndarray],
    input_shape: Sequence[int],
    lsds_shape: Sequence[int] | None,
    affs_shape: Sequence[int] | None,
) -> None:
    b = cfg.train.batch_size
    expected = {"raw": (b, 1, *input_shape)}
    if lsds_shape is not None:
        channels = cfg.num_lsds()
        expected |= {
            "gt_lsds": (b, channels, *lsds_shape),
            "lsds_weights": (b, channels, *lsds_shape),
        }
    if affs_shape is not None:
        a = len(cfg.affinity_neighborhood())
        expected |= {"gt_affs": (b, a, *affs_shape), "affs_weights": (b, a, *affs_shape)}
    labels_shape = affs_shape if affs_shape is not None else lsds_shape
    assert labels_shape is not None
    expected["labels"] = (b, *labels_shape)
    assert {k: v.shape for k, v in batch.items()} == expected
    for name, array in batch.items():
        assert array.dtype == (np.uint64 if name == "labels" else np.float32), name
    assert batch["raw"].min() >= -1.0 and batch["raw"].max() <= 1.0
    assert batch["raw"].std() > 0.05  # an EM image, not padding
    if lsds_shape is not None:
        assert batch["gt_lsds"].min() >= 0.0 and batch["gt_lsds"].max() <= 1.0
        assert set(np.unique(batch["lsds_weights"])) <= {0.0, 1.0}
        assert batch["lsds_weights"].any()
    if affs_shape is not None:
        assert set(np.unique(batch["gt_affs"])) <= {0.0, 1.0}
        assert batch["affs_weights"].min() >= 0.0 and batch["affs_weights"].any()


# ---- values ---------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("preset", "volume", "shapes"),
    [
        ("tiny", "v3d", ((20, 20, 20), (12, 12, 12), (8, 8, 8))),
        ("tiny2d", "v2d", ((60, 60), (40, 40), (24, 24))),
    ],
)
def test_targets_unaugmented(
    volumes: dict[str, Path], preset: str, volume: str, shapes: tuple[Sequence[int], ...]
) -> None:
    """Without augmentation a sample is a crop of the volume: raw is normalize_raw of
    it, LSDs are the whole volume's, affinities those of the returned labels."""
    cfg = config(preset, augment=False)
    # a labelled sample wholly inside the volume, so the test can find where it is
    cfg = cfg.model_copy(
        update={"preprocess": cfg.preprocess.model_copy(update={"min_masked": 1.0})}
    )
    input_shape, lsds_shape, affs_shape = shapes
    path = volumes[volume]
    raw_volume, labels_volume = synthesize(
        SHAPE_3D if cfg.data.dims == 3 else SHAPE_2D, cfg.data.voxel_size, seed=0
    )
    whole_lsds = compute_lsds(
        labels_volume, cfg.model.lsd_sigma, cfg.data.voxel_size, cfg.model.lsd_downsample
    )
    batches = draw(
        cfg, [path], 2, input_shape=input_shape, lsds_shape=lsds_shape, affs_shape=affs_shape
    )
    for batch in batches:
        for i in range(cfg.train.batch_size):
            raw = batch["raw"][i, 0]
            # where the LSD output lies in the volume, found from its raw
            margin = [(n - m) // 2 for n, m in zip(input_shape, lsds_shape)]
            crop = tuple(slice(m, m + s) for m, s in zip(margin, lsds_shape))
            raw_u8 = np.rint((raw[crop] + 1.0) * 127.5).astype(np.uint8)
            hits = np.argwhere(
                (sliding_window_view(raw_volume, lsds_shape) == raw_u8).all(
                    axis=tuple(range(-len(lsds_shape), 0))
                )
            )
            assert len(hits) == 1
            at = tuple(slice(h, h + s) for h, s in zip(hits[0], lsds_shape))
            np.testing.assert_array_equal(raw[crop], normalize_raw(raw_volume[at]))

            np.testing.assert_allclose(
                batch["gt_lsds"][i], whole_lsds[(slice(None), *at)], atol=1e-5
            )
            assert (batch["lsds_weights"][i] == 1.0).all()  # dense labels, mask all ones

            labels = batch["labels"][i]
            inset = [(s - a) // 2 for s, a in zip(lsds_shape, affs_shape)]
            in_volume = tuple(
                slice(h + o, h + o + a) for h, o, a in zip(hits[0], inset, affs_shape)
            )
            np.testing.assert_array_equal(labels, labels_volume[in_volume])
            for c, offset in enumerate(cfg.affinity_neighborhood()):
                expected, valid = affinities(labels, offset)
                np.testing.assert_array_equal(batch["gt_affs"][i, c][valid], expected[valid])
            assert (batch["affs_weights"][i] > 0).all()


def test_large_ids_keep_their_affinities(tmp_path: Path) -> None:
    """Ids that agree modulo 2**32 stay distinct objects (gp.AddAffinities uses int32)."""
    cfg = config("tiny2d", augment=False)
    path = tmp_path / "big_ids.zarr"
    make_volume(path, (64, 64), (4, 4), id_scale=2**32)
    (batch,) = draw(cfg, [path], input_shape=(40, 40), lsds_shape=None, affs_shape=(24, 24))
    for i in range(cfg.train.batch_size):
        labels = batch["labels"][i]
        assert len(np.unique(labels)) > 1
        for c, offset in enumerate(cfg.affinity_neighborhood()):
            expected, valid = affinities(labels, offset)
            np.testing.assert_array_equal(batch["gt_affs"][i, c][valid], expected[valid])
        assert batch["gt_affs"][i].any() and not batch["gt_affs"][i].all()


def test_min_masked(tmp_path: Path) -> None:
    """A volume labelled only in its right half: every sample is labelled at least
    min_masked; without the rule some would not be."""
    mask = np.zeros(SHAPE_2D, dtype=np.uint8)
    mask[:, SHAPE_2D[1] // 2 :] = 1
    path = tmp_path / "half.zarr"
    make_volume(path, SHAPE_2D, (4, 4), mask=mask)

    def fractions(min_masked: float) -> np.ndarray:
        cfg = config("tiny2d", augment=False, batch_size=4)
        cfg = cfg.model_copy(
            update={"preprocess": cfg.preprocess.model_copy(update={"min_masked": min_masked})}
        )
        batches = draw(cfg, [path], 4, input_shape=(40, 40), lsds_shape=(24, 24), affs_shape=None)
        weights = np.concatenate([b["lsds_weights"][:, 0] for b in batches])
        labelled: np.ndarray = (weights > 0).mean(axis=(1, 2))
        return labelled

    assert fractions(0.6).min() >= 0.6
    assert fractions(0.0).min() < 0.6


def test_two_volumes_are_both_sampled(volumes: dict[str, Path]) -> None:
    cfg = config("tiny2d", augment=False, batch_size=1)
    batches = draw(
        cfg,
        [volumes["v2d"], volumes["v2d_b"]],
        12,
        input_shape=(40, 40),
        lsds_shape=None,
        affs_shape=(24, 24),
    )
    second = [bool((b["labels"] >= 10_000).any()) for b in batches]
    assert any(second) and not all(second)


def test_missing_mask_means_all_labelled(volumes: dict[str, Path], tmp_path: Path) -> None:
    path = tmp_path / "no_mask.zarr"
    shutil.copytree(volumes["v2d"], path)
    shutil.rmtree(path / "labels_mask")
    cfg = config("tiny2d", augment=False)
    (batch,) = draw(cfg, [path], input_shape=(40, 40), lsds_shape=(24, 24), affs_shape=(24, 24))
    assert (batch["lsds_weights"] == 1.0).all()
    assert (batch["affs_weights"] > 0).all()


def test_seed_makes_batches_reproducible(volumes: dict[str, Path]) -> None:
    cfg = config("tiny2d")
    shapes: dict[str, Any] = {
        "input_shape": (60, 60),
        "lsds_shape": (24, 24),
        "affs_shape": (24, 24),
    }
    first = draw(cfg, [volumes["v2d"], volumes["v2d_b"]], 2, seed=3, **shapes)
    again = draw(cfg, [volumes["v2d"], volumes["v2d_b"]], 2, seed=3, **shapes)
    other = draw(cfg, [volumes["v2d"], volumes["v2d_b"]], 2, seed=4, **shapes)
    for a, b, c in zip(first, again, other):
        for name in a:
            np.testing.assert_array_equal(a[name], b[name])
        assert not np.array_equal(a["raw"], c["raw"])
    assert not np.array_equal(first[0]["raw"], first[1]["raw"])


def test_precache_workers(volumes: dict[str, Path]) -> None:
    cfg = config("tiny2d", batch_size=1)
    batches = draw(
        cfg,
        [volumes["v2d"]],
        3,
        input_shape=(60, 60),
        lsds_shape=(24, 24),
        affs_shape=(24, 24),
        num_workers=2,
    )
    for batch in batches:
        check_batch(cfg, batch, (60, 60), (24, 24), (24, 24))
    assert not np.array_equal(batches[0]["raw"], batches[1]["raw"])


# ---- errors ---------------------------------------------------------------------------
def test_errors_name_the_problem(volumes: dict[str, Path], tmp_path: Path) -> None:
    cfg = config("tiny2d")
    ok = {"input_shape": (60, 60), "lsds_shape": (24, 24), "affs_shape": None}

    def build(paths: Sequence[Path], **shapes: Any) -> None:
        build_training_pipeline(cfg, paths, **(ok | shapes))

    with pytest.raises(InputError, match="no training volumes"):
        build([])
    no_labels = tmp_path / "raw_only.zarr"
    write_volume(no_labels, np.zeros((64, 64), np.uint8), None, (4, 4))
    with pytest.raises(InputError, match=r"raw_only\.zarr has no labels"):
        build([no_labels])
    with pytest.raises(InputError, match="does not exist"):
        build([tmp_path / "nowhere.zarr"])
    with pytest.raises(InputError, match="voxel size"):
        build([volumes["v3d"]])
    with pytest.raises(InputError, match="centred"):
        build([volumes["v2d"]], lsds_shape=(25, 24))
    with pytest.raises(InputError, match="needs 2"):
        build([volumes["v2d"]], input_shape=(60, 60, 60))
    with pytest.raises(InputError, match="lsds_shape, affs_shape or both"):
        build([volumes["v2d"]], lsds_shape=None)


# ---- the faster stand-ins for gunpowder's code ------------------------------------------
def test_normalize_raw() -> None:
    out = normalize_raw(np.array([0, 51, 255], dtype=np.uint8))
    assert out.dtype == np.float32
    np.testing.assert_allclose(out, [-1.0, -0.6, 1.0], atol=1e-6)
    with pytest.raises(InputError, match="uint8"):
        normalize_raw(np.zeros(3, dtype=np.float32))


def test_upsample_and_interpolation_equal_scipy() -> None:
    rng = np.random.default_rng(1)
    coarse = rng.normal(size=(3, 4, 6, 5)).astype(np.float32)
    fine = upsample_linear(coarse, (20, 31, 17))
    for d in range(3):
        zoomed = ndimage.zoom(coarse[d], (20 / 4, 31 / 6, 17 / 5), order=1)
        np.testing.assert_allclose(fine[d], zoomed, atol=1e-5)

    data = rng.random((2, 6, 30, 30)).astype(np.float32)
    grid = np.stack(np.meshgrid(*map(np.arange, (5, 20, 20)), indexing="ij")).astype(np.float32)
    for z_jitter in (0.0, 0.9):  # whole sections (interpolated in 2D), and 3D
        jitter = rng.uniform(0.0, 1.0, grid.shape) * np.array([z_jitter, 9, 9])[:, None, None, None]
        coords = (grid + jitter).astype(np.float32)
        for c in range(2):
            expected = ndimage.map_coordinates(data[c], coords, order=1)
            np.testing.assert_allclose(interpolate_linear(data, coords)[c], expected, atol=1e-5)


def test_interpolation_in_slabs_equals_one_pass(monkeypatch: pytest.MonkeyPatch) -> None:
    """Slabs of a few rows give what one slab gives, bit for bit, linear and nearest,
    with whole and fractional axes and coordinates clipped at the data's edges."""
    rng = np.random.default_rng(3)
    data = rng.random((1, 6, 30, 30)).astype(np.float32)
    grid = np.stack(np.meshgrid(*map(np.arange, (5, 20, 20)), indexing="ij")).astype(np.float32)
    coords = (
        grid
        + rng.uniform(-1.0, 12.0, grid.shape).astype(np.float32)
        * np.array([0, 1, 1], dtype=np.float32)[:, None, None, None]
    )
    monkeypatch.setattr(elastic_augment, "_SLAB_VOXELS", 1 << 30)
    whole = interpolate_linear(data, coords)
    monkeypatch.setattr(elastic_augment, "_SLAB_VOXELS", 50)
    np.testing.assert_array_equal(interpolate_linear(data, coords), whole)
    labels = rng.integers(0, 2**60, data.shape, dtype=np.uint64)
    monkeypatch.setattr(elastic_augment, "_SLAB_VOXELS", 1 << 30)
    nearest = sample_nearest(labels, coords)
    monkeypatch.setattr(elastic_augment, "_SLAB_VOXELS", 50)
    np.testing.assert_array_equal(sample_nearest(labels, coords), nearest)
    coords[0, 2] += 0.5  # one fractional z section makes z fractional everywhere
    monkeypatch.setattr(elastic_augment, "_SLAB_VOXELS", 1 << 30)
    whole = interpolate_linear(data, coords)
    monkeypatch.setattr(elastic_augment, "_SLAB_VOXELS", 50)
    np.testing.assert_array_equal(interpolate_linear(data, coords), whole)


ELASTIC = {
    "control_point_spacing": (4, 20, 20),
    "jitter_sigma": (0, 2, 2),
    "rotation_interval": (0, np.pi / 2),
    "prob_slip": 0.2,
    "prob_shift": 0.2,
    "max_misalign": 3,
    "subsample": 4,
}


def deform(node: gp.BatchFilter, raw: np.ndarray, labels: np.ndarray) -> tuple[np.ndarray, ...]:
    """raw and labels (40 x 4 x 4 nm voxels) through `node`, seeded."""
    keys = gp.ArrayKey("ELASTIC_RAW"), gp.ArrayKey("ELASTIC_LABELS")
    voxel = (40, 4, 4)
    sources = (
        gp.ArraySource(keys[0], Array(raw, (0, 0, 0), voxel), interpolatable=True),
        gp.ArraySource(keys[1], Array(labels, (0, 0, 0), voxel), interpolatable=False),
    )
    pipeline = sources + gp.MergeProvider() + node
    request = gp.BatchRequest(random_seed=7)
    request[keys[0]] = gp.ArraySpec(roi=gp.Roi((160, 80, 80), (400, 160, 160)))
    request[keys[1]] = gp.ArraySpec(roi=gp.Roi((240, 120, 120), (240, 80, 80)))
    with gp.build(pipeline):
        batch = pipeline.request_batch(request)
    return batch[keys[0]].data, batch[keys[1]].data


def _gunpowder_elastic() -> gp.BatchFilter:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        return gp.ElasticAugment(**ELASTIC)


def test_elastic_augment_equals_gunpowder() -> None:
    """Same seed, same deformation as gp.ElasticAugment (with misalignment); label ids
    beyond float64's integers survive (gunpowder's resampling rounds them)."""
    if not hasattr(gp, "ElasticAugment"):
        pytest.skip("this gunpowder has no ElasticAugment (deprecated in 1.4) to compare with")
    rng = np.random.default_rng(2)
    raw = ndimage.gaussian_filter(rng.random((24, 96, 96)), 2).astype(np.float32)
    cells = rng.integers(1, 2**40, (6, 8, 8), dtype=np.uint64)
    labels = cells.repeat(4, 0).repeat(12, 1).repeat(12, 2)

    raw_gp, labels_gp = deform(_gunpowder_elastic(), raw, labels)
    raw_ours, labels_ours = deform(ElasticAugment(**ELASTIC), raw, labels)
    assert not np.allclose(raw_ours, raw[4:14, 20:60, 20:60], atol=0.01)  # it deforms
    np.testing.assert_allclose(raw_ours, raw_gp, atol=1e-4)
    # float32 rounding may move a coordinate across a rounding edge, very rarely
    assert (labels_ours != labels_gp).mean() < 1e-3

    big = labels + np.uint64(2**60)
    _, big_ours = deform(ElasticAugment(**ELASTIC), raw, big)
    assert set(np.unique(big_ours)) <= set(np.unique(big))
    np.testing.assert_array_equal(big_ours - np.uint64(2**60), labels_ours)


def test_keys_are_stable() -> None:
    assert TrainingKeys.create() == TrainingKeys.create()
    assert TrainingKeys.create().gt_lsds == gp.ArrayKey("GT_LSDS")


def test_unmeetable_min_masked_fails(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """gunpowder alone would draw locations forever."""
    monkeypatch.setattr("engine.train.pipeline._MAX_LOCATIONS", 500)
    path = tmp_path / "unlabelled.zarr"
    make_volume(path, (64, 64), (4, 4), mask=np.zeros((64, 64), np.uint8))
    cfg = config("tiny2d", augment=False)
    with pytest.raises(Exception, match=r"no sample of .*unlabelled\.zarr has 50% labelled"):
        draw(cfg, [path], input_shape=(40, 40), lsds_shape=(24, 24), affs_shape=None)


def test_transposes_keep_the_request_shape(tmp_path: Path) -> None:
    """A non-cubic input on a thin isotropic volume: transposing z with y would ask for
    64 sections of a 35-section volume (gunpowder: "Can not satisfy request")."""
    cfg = config("tiny")
    assert transposable_axes(cfg, (32, 64, 64)) == [1, 2]
    assert transposable_axes(cfg, (44, 44, 44)) == [0, 1, 2]
    assert transposable_axes(cfg, (20, 28, 36)) == []
    assert transposable_axes(config("cremi"), (132, 268, 268)) == [1, 2]  # never z
    path = tmp_path / "thin.zarr"
    make_volume(path, (35, 100, 100), (8, 8, 8))
    batches = draw(
        cfg, [path], 4, input_shape=(32, 64, 64), lsds_shape=(12, 44, 44), affs_shape=None
    )
    for batch in batches:
        assert batch["raw"].shape[-3:] == (32, 64, 64)
        assert batch["gt_lsds"].shape[-3:] == (12, 44, 44)
