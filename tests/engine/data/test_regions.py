"""Regions (--roi), masks and blockwise evaluation: engine.data.region, engine.data.mask,
engine.evaluate.contingency and engine.evaluate.block_counts, against whole-volume references."""

from __future__ import annotations

import json
import subprocess
import sys
from fractions import Fraction
from pathlib import Path

import numpy as np
import pytest
import zarr

from engine.data.mask import Mask, digest
from engine.data.region import Region, parse, resolve
from engine.data.volume import create_array, write_volume
from engine.errors import InputError
from engine.evaluate.block_counts import count_every_block, merged, plan_counts
from engine.evaluate.contingency import Table, count_pairs, merge, sum_of_squares
from engine.evaluate.metrics import score, scores_of
from engine.evaluate.partitioned_scores import count_scores
from engine.project import config as cfg
from engine.runs.spec import RunSpec, read_spec, write_spec
from tests.engine.evaluate.test_evaluate import make_segment_run
from tests.engine.predict.test_predict import slurm  # noqa: F401  (the Slurm cluster fixture)

ROOT = Path(__file__).resolve().parents[3]


# ---- regions ---------------------------------------------------------------------------


def test_roi_in_nm_and_in_voxels() -> None:
    voxel, offset, shape = (40, 4, 4), (400, 0, 0), (10, 100, 100)
    nm = resolve("400:800,8:40,0:400", voxel, offset, shape, "v")
    assert nm == Region((400, 8, 0), (400, 32, 400))
    # Voxels count from the array's first voxel, whatever its world offset.
    assert resolve("0:10,2:10,0:100vx", voxel, offset, shape, "v") == nm
    assert nm.voxel_shape(voxel) == (10, 8, 100)


@pytest.mark.parametrize(
    ("text", "match"),
    [
        ("0:10,0:10", "has 2 axes, v has 3"),
        ("0:10;0:10;0:10", "is not z0:z1,y0:y1,x0:x1"),
        ("a:b,0:4,0:4", "is not z0:z1,y0:y1,x0:x1"),
        ("", "is not z0:z1,y0:y1,x0:x1"),
        ("400:400,0:4,0:4", "is empty along axis 0"),
        ("800:400,0:4,0:4", "is empty along axis 0"),
        ("400:820,0:4,0:4", r"not on the voxel grid of v along axis 0 .*use 400:840 there"),
        ("0:400,0:4,0:4", "reaches outside v, which spans 400:800,0:400,0:400 nm"),
        ("0:11,0:4,0:4vx", r"reaches outside v.*\(0:10,0:100,0:100vx\)"),
    ],
)
def test_bad_roi_refused_in_one_line(text: str, match: str) -> None:
    with pytest.raises(InputError, match=match) as caught:
        resolve(text, (40, 4, 4), (400, 0, 0), (10, 100, 100), "v")
    assert "\n" not in str(caught.value)


def test_parse_keeps_the_unit() -> None:
    assert parse(" 0:4, 2:6 VX").voxels and not parse("0:4,2:6").voxels


# ---- exact counts ----------------------------------------------------------------------


def test_sum_of_squares_is_exact_past_int64() -> None:
    rng = np.random.default_rng(0)
    counts = np.concatenate(
        [rng.integers(0, 2**31, 5000), [2**31, 3 * 10**9, 2**40, 2**62 - 1]]
    ).astype(np.int64)
    expected = sum(int(c) ** 2 for c in counts)
    assert expected > 2**64  # int64 arithmetic would wrap
    assert sum_of_squares(counts) == expected
    assert int(np.dot(counts, counts)) != expected  # what engine.evaluate.metrics used to do


def test_adapted_rand_past_2_to_the_32_voxels_matches_python_integers() -> None:
    """A table of ~1.4·10¹⁰ voxels (counts past 2**32, squares past 2**63), merged from
    two blocks' tables, scored against the formula in Python integers."""
    gt = np.array([1, 1, 2, 2, 3], np.uint64)
    seg = np.array([1, 2, 2, 3, 3], np.uint64)
    count = np.array([5 * 10**9, 7, 4 * 10**9 + 11, 3 * 10**9, 2**33], np.int64)
    half = count // 2
    table = merge([Table(gt, seg, half), Table(gt[::-1], seg[::-1], (count - half)[::-1])])
    assert np.array_equal(table.count, count) and table.voxels == int(count.sum()) > 2**32
    n = sum(int(c) for c in count)
    both = sum(int(c) ** 2 for c in count) - n
    gt_sizes = [sum(int(c) for c, g in zip(count, gt) if g == i) for i in (1, 2, 3)]
    seg_sizes = [sum(int(c) for c, s in zip(count, seg) if s == i) for i in (1, 2, 3)]
    in_gt = sum(s * s for s in gt_sizes) - n
    in_seg = sum(s * s for s in seg_sizes) - n
    expected = 1 - Fraction(2 * both, in_gt + in_seg)
    assert scores_of(table).arand == pytest.approx(float(expected), rel=1e-12, abs=1e-15)


def test_count_pairs_merge_to_the_whole() -> None:
    rng = np.random.default_rng(3)
    gt = rng.integers(0, 6, (20, 30)).astype(np.uint64) + np.uint64(2**40)
    seg = rng.integers(0, 9, (20, 30)).astype(np.uint64)
    whole = count_pairs(gt, seg)
    parts = merge(count_pairs(gt[a : a + 7], seg[a : a + 7]) for a in range(0, 20, 7))
    for name in ("gt", "seg", "count"):
        assert np.array_equal(getattr(whole, name), getattr(parts, name))


# ---- blockwise evaluation --------------------------------------------------------------


def _scored_volume(folder: Path) -> tuple[Path, Path, np.ndarray, np.ndarray, np.ndarray]:
    """Labels with background and a mask, two segmentations offset by 2 z voxels."""
    rng = np.random.default_rng(11)
    shape = (14, 24, 20)
    labels = (rng.integers(0, 5, shape) * (rng.random(shape) < 0.9)).astype(np.uint64)
    labels = np.repeat(labels[:, :, ::4], 4, axis=2)[:, :, : shape[2]]
    mask = np.ones(shape, np.uint8)
    mask[:, :5] = 0
    write_volume(folder / "vol.zarr", np.zeros(shape, np.uint8), labels, (8, 4, 4), mask=mask)
    segmentation = folder / "seg.zarr"
    seg_shape = (12, 24, 20)
    values = {}
    for name, ids in (("segmentation_0.50", 9), ("fragments", 40)):
        values[name] = rng.integers(1, ids, seg_shape).astype(np.uint64)
        create_array(segmentation, name, seg_shape, np.uint64, (8, 4, 4), (16, 0, 0))[:] = values[
            name
        ]
    keep = (labels[2:] != 0) & (mask[2:] > 0)
    return folder / "vol.zarr", segmentation, labels[2:], keep, values["segmentation_0.50"]


@pytest.mark.parametrize("block", [(12, 24, 20), (5, 7, 6), (1, 24, 3), (3, 8, 20)])
def test_blockwise_counts_equal_the_whole_volume(tmp_path: Path, block: tuple[int, ...]) -> None:
    volume, segmentation, truth, keep, seg = _scored_volume(tmp_path)
    plan = plan_counts(
        "seg", segmentation, volume, ["segmentation_0.50", "fragments"], block, tmp_path / "c"
    )
    count_every_block(plan)
    table = merged(plan)["segmentation_0.50"]
    whole = count_pairs(truth[keep], seg[keep])
    for name in ("gt", "seg", "count"):
        assert np.array_equal(getattr(table, name), getattr(whole, name))
    assert scores_of(table) == score(seg[keep], truth[keep], ignore_gt=())
    assert table.voxels == int(keep.sum())


@pytest.mark.parametrize("budget", [300, 1000, 10**9])
def test_scores_in_parts_equal_the_whole_table(tmp_path: Path, budget: int) -> None:
    volume, segmentation, truth, keep, _ = _scored_volume(tmp_path)
    names = ["segmentation_0.50", "fragments"]
    plan = plan_counts("seg", segmentation, volume, names, (5, 7, 6), tmp_path / "c")
    count_every_block(plan)
    counted = count_scores(plan, budget=budget)
    tables = merged(plan)
    assert counted.voxels == int(keep.sum())
    for name in names:
        whole = scores_of(tables[name])
        # Integer sums: exact. VOI: the same float terms, added in another order.
        assert counted.scores[name].arand == whole.arand
        assert counted.scores[name].voi_split == pytest.approx(whole.voi_split, rel=1e-12)
        assert counted.scores[name].voi_merge == pytest.approx(whole.voi_merge, rel=1e-12)
    if budget >= 10**9:  # one part: the whole table, bit for bit
        assert counted.scores["fragments"] == scores_of(tables["fragments"])
    gt_sizes = np.unique(truth[keep], return_counts=True)[1].astype(np.int64)
    ids = np.unique(truth[keep])
    one = scores_of(Table(ids, np.ones(ids.size, np.uint64), gt_sizes))
    assert counted.one_segment is not None
    assert counted.one_segment.arand == one.arand
    assert counted.one_segment.voi_split == one.voi_split
    assert counted.one_segment.voi_merge == pytest.approx(one.voi_merge, rel=1e-12)


def test_scores_in_parts_hold_one_part_at_a_time(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from engine.evaluate import partitioned_scores

    volume, segmentation, _, _, _ = _scored_volume(tmp_path)
    plan = plan_counts("seg", segmentation, volume, ["fragments"], (5, 7, 6), tmp_path / "c")
    count_every_block(plan)
    whole = merged(plan)["fragments"].count.size
    held: list[int] = []
    original = partitioned_scores.marginals

    def spy(table: Table) -> tuple[np.ndarray, np.ndarray]:
        held.append(table.count.size)
        return original(table)

    monkeypatch.setattr(partitioned_scores, "marginals", spy)
    monkeypatch.setattr(partitioned_scores, "merged", None)  # the whole table is never built
    partitioned_scores.count_scores(plan, budget=whole // 4)
    assert len(held) >= 8  # at least 4 parts by label, 4 by segment
    assert max(held) < whole / 2


def test_scores_in_parts_read_each_block_file_twice_whatever_the_parts(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Once to count the rows, once to split them into the parts' files: not once a part.
    volume, segmentation, _, _, _ = _scored_volume(tmp_path)
    plan = plan_counts("seg", segmentation, volume, ["fragments"], (5, 7, 6), tmp_path / "c")
    count_every_block(plan)
    files = sorted(p for p in plan.folder.glob("*.npz") if not p.name.startswith("."))
    whole = merged(plan)["fragments"].count.size
    reads: list[Path] = []
    original = np.load

    def counting(path: object, *args: object, **kwargs: object) -> object:
        reads.append(Path(str(path)))
        return original(path, *args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(np, "load", counting)
    count_scores(plan, budget=whole // 8)
    assert len(files) > 4
    assert sorted(reads) == sorted(files * 2)
    assert not [p for p in plan.folder.iterdir() if p.is_dir()], "the part files are removed"


def test_blockwise_counts_on_a_region_equal_the_crop(tmp_path: Path) -> None:
    volume, segmentation, truth, keep, seg = _scored_volume(tmp_path)
    # z 4..9 (world 32..80 nm: the segmentation starts at 16), y 3..18, x 2..12 voxels.
    plan = plan_counts(
        "seg",
        segmentation,
        volume,
        ["segmentation_0.50"],
        (4, 5, 6),
        tmp_path / "c",
        roi="32:80,12:72,8:48",
    )
    assert plan.region == Region((32, 12, 8), (48, 60, 40))
    count_every_block(plan)
    crop = (slice(2, 8), slice(3, 18), slice(2, 12))
    sub_keep = keep[crop]
    expected = score(seg[crop][sub_keep], truth[crop][sub_keep], ignore_gt=())
    assert scores_of(merged(plan)["segmentation_0.50"]) == expected


def test_a_coarse_mask_is_read_at_the_volume_resolution(tmp_path: Path) -> None:
    coarse = np.zeros((2, 3, 3), np.uint8)
    coarse[1, 2, 0] = 1
    create_array(tmp_path / "v.zarr", "tissue", coarse.shape, np.uint8, (16, 8, 8), (0, 0, 0))[
        :
    ] = coarse
    mask = Mask(tmp_path / "v.zarr", "tissue", (8, 4, 4))
    read = mask.read((8, 12, 0), (16, 16, 8))
    assert read.shape == (2, 4, 2)
    expected = np.zeros((2, 4, 2), bool)
    expected[1, 1:3, :] = True  # coarse voxel z 16..32, y 16..24 nm
    assert np.array_equal(read, expected)
    assert mask.covers((16, 16, 0), (8, 8, 8)) and not mask.covers((0, 0, 0), (16, 16, 24))
    before = digest(tmp_path / "v.zarr", "tissue")
    zarr.open(str(tmp_path / "v.zarr" / "tissue"), mode="r+")[0, 0, 0] = 1
    assert digest(tmp_path / "v.zarr", "tissue") != before


def test_evaluate_run_on_a_region_scores_the_crop(tmp_path: Path) -> None:
    """A real evaluate run (daisy workers, two of them) with --roi equals the whole-volume
    scores of the cropped arrays."""
    project = tmp_path / "proj"
    segment_run = make_segment_run(project)
    run_dir = project / "runs" / "evaluate-roi"
    config = cfg.with_value(cfg.from_preset("tiny"), "predict.num_workers", 2)
    write_spec(
        run_dir,
        RunSpec(
            id="evaluate-roi",
            kind="evaluate",
            project=str(project),
            config=config,
            inputs={"segment_run": str(segment_run), "roi": "1:7,2:14,0:16vx"},
            resources={"workers": 2},
        ),
    )
    done = subprocess.run(
        [sys.executable, "-m", "engine.evaluate", str(run_dir)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    metrics = json.loads((run_dir / "metrics.json").read_text())
    volume = metrics["volumes"]["vol"]
    # The segmentation starts at z = 4 voxels (32 nm): 1:7vx is world z 40..88.
    assert volume["roi"] == {"offset": [40, 16, 0], "shape": [48, 96, 128]}
    container = segment_run / "segmentation" / "vol.zarr"
    labels = zarr.open(str(project / "test" / "vol.zarr" / "labels"), mode="r")[5:11, 2:14]
    mask = zarr.open(str(project / "test" / "vol.zarr" / "labels_mask"), mode="r")[5:11, 2:14]
    keep = (labels != 0) & (mask > 0)
    assert volume["voxels"] == int(keep.sum())
    for row in volume["per_threshold"]:
        seg = zarr.open(str(container / row["dataset"]), mode="r")[1:7, 2:14]
        expected = score(seg[keep], labels[keep], ignore_gt=())
        assert row["voi_split"] == expected.voi_split and row["arand"] == expected.arand
    blocks = [json.loads(line) for line in (run_dir / "events.jsonl").read_text().splitlines()]
    grid = next(e for e in blocks if e["type"] == "blockgrid")
    assert grid["task"] == "evaluate-vol" and grid["total"] >= 1
    assert (run_dir / "counts" / "vol").is_dir()


# ---- segment on a region, inside a mask -------------------------------------------------


@pytest.mark.slow
def test_segment_on_a_region_equals_segmenting_the_crop_and_respects_the_mask(
    tmp_path: Path,
) -> None:
    """Blocks never read outside the region, so segmenting a region of a prediction gives
    exactly the segmentation of the prediction cropped to it (same fragment ids too); with
    the prediction's mask recorded, no fragment lies outside it and empty blocks skip."""
    from engine.project.layout import init_project
    from tests.engine.segment.test_segment import _run, _segment_run, fake_prediction

    project = init_project("seg", "tiny", root=tmp_path / "projects")
    project.save_config(cfg.with_value(project.load_config(), "segment.thresholds", [0.3, 0.6]))
    prediction = fake_prediction(tmp_path / "p", (28, 56, 56))
    affs = zarr.open(str(prediction / "pred_affs"), mode="r")[:]
    cropped = tmp_path / "c" / "crop.zarr"
    create_array(cropped, "pred_affs", (3, 28, 28, 42), np.uint8, (8, 8, 8), (0, 224, 112))[:] = (
        affs[:, :, 28:56, 14:56]
    )
    attrs = zarr.open_group(str(prediction), mode="r").attrs.asdict()
    zarr.open_group(str(cropped), mode="a").attrs.update(attrs)
    outputs = {}
    for name, source, roi in (("roi", prediction, "0:28,28:56,14:56vx"), ("crop", cropped, None)):
        run_dir = _segment_run(project, source, name, block_shape=[14, 14, 14])
        if roi:
            spec = read_spec(run_dir)
            (run_dir / "run.toml").unlink()
            write_spec(run_dir, spec.model_copy(update={"inputs": {**spec.inputs, "roi": roi}}))
        done = _run(run_dir)
        assert done.returncode == 0, done.stderr[-3000:]
        container = run_dir / "segmentation" / source.name
        outputs[name] = {
            d: zarr.open(str(container / d), mode="r")
            for d in ("fragments", "segmentation_0.30", "segmentation_0.60")
        }
    for dataset, array in outputs["roi"].items():
        assert array.attrs["offset"] == [0, 224, 112] and array.shape == (28, 28, 42)
        assert np.array_equal(array[:], outputs["crop"][dataset][:]), dataset

    # A mask recorded by predict: one of the tissue's voxels per x half of the volume.
    tissue = np.zeros((28, 56, 56), np.uint8)
    tissue[:14, :, :20] = 1
    volume = Path(attrs["source_volume"])
    create_array(volume, "tissue", tissue.shape, np.uint8, (8, 8, 8), (0, 0, 0))[:] = tissue
    zarr.open_group(str(prediction), mode="a").attrs["mask"] = {
        "volume": str(volume),
        "array": "tissue",
        "sha256": digest(volume, "tissue"),
    }
    run_dir = _segment_run(project, prediction, "masked", block_shape=[14, 14, 14])
    done = _run(run_dir)
    assert done.returncode == 0, done.stderr[-3000:]
    fragments = zarr.open(str(run_dir / "segmentation" / prediction.name / "fragments"))[:]
    assert not fragments[tissue == 0].any() and fragments[tissue > 0].all()
    events = [json.loads(line) for line in (run_dir / "events.jsonl").read_text().splitlines()]
    statuses = [e["status"] for e in events if e["type"] == "block" and e["status"] != "running"]
    # 2x4x4 blocks a stage; the tissue touches z block 0, x blocks 0 and 1: 8 of 32.
    assert statuses.count("skipped") == 3 * 24 and statuses.count("done") == 3 * 8


# ---- segment and evaluate workers on a real Slurm cluster ------------------------------


@pytest.mark.slow
@pytest.mark.usefixtures("slurm")
def test_slurm_workers_segment_and_evaluate_the_same(tmp_path: Path) -> None:
    """Segment and evaluate with their workers as Slurm jobs (the test cluster of
    tests/engine/predict/test_predict.py) give what local workers give."""
    from engine.project.layout import init_project
    from engine.runs.spec import Resources
    from tests.engine.segment.test_segment import _run, _segment_run, fake_prediction

    project = init_project("seg", "tiny", root=tmp_path / "projects")
    project.save_config(cfg.with_value(project.load_config(), "segment.thresholds", [0.5]))
    prediction = fake_prediction(tmp_path / "p", (28, 56, 56))
    results = {}
    for executor in ("local", "slurm"):
        run_dir = _segment_run(project, prediction, f"seg-{executor}", block_shape=[28, 28, 28])
        spec = read_spec(run_dir)
        (run_dir / "run.toml").unlink()
        resources = Resources(workers=2, executor=executor)
        write_spec(run_dir, spec.model_copy(update={"resources": resources}))
        done = _run(run_dir)
        assert done.returncode == 0, done.stderr[-3000:]
        # The segment run, finished, is what evaluate scores (lineage reads its result).
        evaluate_dir = project.runs_dir / f"evaluate-{executor}"
        write_spec(
            evaluate_dir,
            RunSpec(
                id=f"evaluate-{executor}",
                kind="evaluate",
                project=str(project.path),
                config=spec.config,
                inputs={"segment_run": str(run_dir)},
                resources=resources,
            ),
        )
        done = subprocess.run(
            [sys.executable, "-m", "engine.evaluate", str(evaluate_dir)],
            cwd=ROOT,
            capture_output=True,
            text=True,
            timeout=300,
        )
        assert done.returncode == 0, done.stderr[-3000:]
        container = run_dir / "segmentation" / prediction.name
        results[executor] = (
            zarr.open(str(container / "segmentation_0.50"), mode="r")[:],
            json.loads((evaluate_dir / "metrics.json").read_text())["per_threshold"],
        )
        if executor == "slurm":
            for folder in (run_dir, evaluate_dir):
                assert list((folder / "workers").glob("*.cluster-*.log")), "Slurm jobs ran"
    assert np.array_equal(results["local"][0], results["slurm"][0])
    assert results["local"][1] == results["slurm"][1]
