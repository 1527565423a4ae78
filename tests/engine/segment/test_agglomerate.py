"""Agglomeration: blockwise merge scores reproduce waterz's own segmentations exactly."""

from __future__ import annotations

import importlib.util
import os
import time
from collections.abc import Callable
from typing import Any

import numpy as np
import pytest

from engine.errors import InputError
from engine.segment.agglomerate import (
    MERGE_FUNCTIONS,
    _first_merge_scores,
    agglomerate_block,
    effective_scores,
    is_prebuilt,
    merge_history,
    quiet_stdout,
    relabel,
    scoring_function,
    segment_lut,
    segment_whole_volume,
)
from engine.segment.fragments import fragments_watershed, relabel_block
from tests.engine.segment.test_fragments import toy_affinities, toy_dense_labels, toy_labels

THRESHOLDS = [0.05, 0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 1.0]


def _same_partition(a: np.ndarray, b: np.ndarray) -> bool:
    """Equal up to renaming: every id of one meets exactly one id of the other."""
    pairs = np.unique(np.stack([a.ravel(), b.ravel()]), axis=1)
    return bool(np.unique(pairs[0]).size == np.unique(pairs[1]).size == pairs.shape[1])


def _blockwise(
    affs: np.ndarray,
    fragments: np.ndarray,
    merge_function: str,
    at: list[float],
    **kw: Any,
) -> dict[float, np.ndarray]:
    """Segmentations at ``at`` from agglomerate_block(**kw) and segment_lut."""
    edges = agglomerate_block(affs, fragments, merge_function, **kw)
    nodes = np.unique(fragments[fragments != 0])
    return {
        t: relabel(fragments, segment_lut(edges.u, edges.v, edges.merge_score, nodes, t))
        for t in at
    }


def _watershed_case(seed: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    labels = toy_labels((12, 32, 32), 10, rng)
    affs = toy_affinities(labels, rng)
    fragments, _ = fragments_watershed(affs, fragments_in_xy=False, min_seed_distance=3)
    # Block-unique ids far beyond the volume size: waterz must never see them as they are.
    return affs, relabel_block(fragments, 2**43, 2**20)


def _dense_case(seed: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    affs = toy_affinities(toy_labels((12, 32, 32), 10, rng), rng)
    return affs, toy_dense_labels((12, 32, 32), 300, rng) * np.uint64(1000)


@pytest.mark.parametrize("merge_function", ["hist_quant_75", "mean"])
@pytest.mark.parametrize("case", [_watershed_case, _dense_case])
@pytest.mark.parametrize("seed", [0, 1])
def test_blockwise_scores_reproduce_waterz(
    merge_function: str, case: Callable[[int], tuple[np.ndarray, np.ndarray]], seed: int
) -> None:
    affs, fragments = case(seed)
    assert fragments.max() >= 2**63 or fragments.max() > fragments.size
    reference = segment_whole_volume(affs, fragments, THRESHOLDS, merge_function)
    # Without the thresholds (running maximum alone) and with them.
    options: list[dict[str, Any]] = [{}, {"thresholds": THRESHOLDS}]
    for kw in options:
        ours = _blockwise(affs, fragments, merge_function, THRESHOLDS, **kw)
        for t in THRESHOLDS:
            assert _same_partition(ours[t], reference[t]), (t, kw)
    sizes = [np.unique(reference[t]).size for t in THRESHOLDS]
    assert sizes[0] > sizes[-1]  # thresholds that do something


def _quantised_case(seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Affinities in tenths, a dense over-segmentation: many equal means, whose float
    averages round."""
    rng = np.random.default_rng(seed)
    affs = toy_affinities(toy_labels((8, 24, 24), 6, rng), rng)
    affs = (np.round(affs * 10) / 10).astype(np.float32)
    return affs, toy_dense_labels((8, 24, 24), 200, rng)


def test_running_maximum_is_needed_where_raw_scores_are_not_monotone() -> None:
    for seed in range(60):
        affs, fragments = _quantised_case(seed)
        history = merge_history(affs, fragments, scoring_function("mean"))
        dips = np.flatnonzero(np.diff(history.score) < 0)
        if dips.size:
            break
    else:
        pytest.fail("no non-monotone merge history found")
    # Thresholds right at the scores around each dip, where raw and running maximum part.
    running = np.maximum.accumulate(history.score)
    thresholds = sorted(
        {float(running[k]) for k in dips}
        | {float(history.score[k + 1]) for k in dips}
        | {float(np.nextafter(running[k], np.float32(1))) for k in dips}
        | {0.3, 0.6}
    )
    reference = segment_whole_volume(affs, fragments, thresholds, "mean")
    ours = _blockwise(affs, fragments, "mean", thresholds)
    assert all(_same_partition(ours[t], reference[t]) for t in thresholds)

    edges = agglomerate_block(affs, fragments, "mean")
    raw = _first_merge_scores(edges.u, edges.v, history.a, history.b, history.score)
    nodes = np.unique(fragments)
    raw_ok = [
        _same_partition(relabel(fragments, segment_lut(edges.u, edges.v, raw, nodes, t)), ref)
        for t, ref in reference.items()
    ]
    assert not all(raw_ok), "the raw scores should have failed somewhere"


def test_floors_make_the_given_thresholds_exact() -> None:
    # Found by a search over seeds (1 in 40 of these volumes): here waterz pops a stale
    # edge at a score above the running maximum (float rounding of a merged mean, not in
    # the merge history) right at 0.1. The case depends on the exact toy data: if the toy
    # generators change, search again. Should a future waterz round differently, the first
    # assertion fails for good: then the caveat in effective_scores can go.
    rng = np.random.default_rng(15)
    labels = toy_labels((12, 32, 32), 10, rng)
    affs = toy_affinities(labels, rng)
    fragments, _ = fragments_watershed(affs, fragments_in_xy=False, min_seed_distance=3)
    affs = (np.round(affs * 10) / 10).astype(np.float32)
    reference = segment_whole_volume(affs, fragments, [0.1], "mean")[0.1]
    plain = _blockwise(affs, fragments, "mean", [0.1])[0.1]
    assert not _same_partition(plain, reference)
    exact = _blockwise(affs, fragments, "mean", [0.1], thresholds=[0.1, 0.5])[0.1]
    assert _same_partition(exact, reference)


def test_bin_queue_is_exact_at_the_given_thresholds_only() -> None:
    affs, fragments = _dense_case(0)
    reference = segment_whole_volume(affs, fragments, THRESHOLDS, "mean", discretize_queue=256)
    given = _blockwise(
        affs, fragments, "mean", THRESHOLDS, thresholds=THRESHOLDS, discretize_queue=256
    )
    assert all(_same_partition(given[t], reference[t]) for t in THRESHOLDS)
    running = _blockwise(affs, fragments, "mean", THRESHOLDS, discretize_queue=256)
    assert not all(_same_partition(running[t], reference[t]) for t in THRESHOLDS)


def test_effective_scores_take_running_maximum_and_floors() -> None:
    affs, fragments = _dense_case(3)
    history = merge_history(affs, fragments, scoring_function("hist_quant_50"), thresholds=[0.4])
    effective = effective_scores(history)
    assert effective.dtype == np.float32
    assert np.all(np.diff(effective) >= 0)
    assert np.all(effective >= history.score)
    after = history.floor == np.float32(0.4)
    assert after.any() and np.all(effective[after] >= np.float32(0.4))
    assert np.all(history.score[~after] < np.float32(0.4))


def test_merge_scores_follow_the_first_merge_on_a_chain() -> None:
    # A path 0-1-...-n merged as one growing region: a quadratic union scanning the big
    # side would take minutes here.
    n = 50_000
    u = np.arange(1, n, dtype=np.uint64)
    v = u + np.uint64(1)
    a = np.ones(n - 1, dtype=np.uint64)  # region 1 absorbs 2, 3, ... in turn
    b = np.arange(2, n + 1, dtype=np.uint64)
    scores = np.linspace(0, 0.9, n - 1, dtype=np.float32)
    start = time.perf_counter()
    out = _first_merge_scores(u, v, a, b, scores)
    assert time.perf_counter() - start < 2.0
    assert np.array_equal(out, scores)
    # Merging the two halves last: only the edge between them gets the last score.
    half = n // 2
    a2 = np.concatenate([np.ones(half - 1), np.full(n - half - 1, half + 1), [1]]).astype(np.uint64)
    b2 = np.concatenate([np.arange(2, half + 1), np.arange(half + 2, n + 1), [n]]).astype(np.uint64)
    out = _first_merge_scores(u, v, a2, b2, scores)
    assert out[half - 1] == scores[-1]
    assert out[-1] == scores[n - half - 1 + half - 2]  # the merge of n into its region
    unmerged = _first_merge_scores(u, v, a2[:-1], b2[:-1], scores[:-1])
    assert unmerged[half - 1] == 1.0


def test_segment_lut_components_and_ids() -> None:
    u = np.array([10, 20, 30, 2**63 + 1], dtype=np.uint64)
    v = np.array([20, 30, 40, 50], dtype=np.uint64)
    scores = np.array([0.1, 0.5, np.nan, 0.2], dtype=np.float32)
    nodes = np.array([50, 10, 99, 20, 30, 40, 2**63 + 1], dtype=np.uint64)
    ids, segments = segment_lut(u, v, scores, nodes, 0.5)
    assert ids.tolist() == sorted({10, 20, 30, 40, 50, 99, 2**63 + 1})
    lut = dict(zip(ids.tolist(), segments.tolist()))
    # 0.5 is not below 0.5, NaN never merges, 99 is on its own; ids are smallest members.
    assert lut == {10: 10, 20: 10, 30: 30, 40: 40, 50: 50, 2**63 + 1: 50, 99: 99}
    ids, segments = segment_lut(u, v, scores, nodes, 0.6)
    assert dict(zip(ids.tolist(), segments.tolist()))[30] == 10
    # Compared in float32, as waterz does: float32(0.1) > 0.1 is still not below 0.1.
    ids, segments = segment_lut(u[:1], v[:1], np.array([0.1], dtype=np.float32), nodes, 0.1)
    assert segments[ids == 20][0] == 20
    with pytest.raises(InputError, match="background"):
        segment_lut(u, v, scores, np.array([0, 10], dtype=np.uint64), 0.5)


def test_relabel_maps_through_the_table_and_keeps_zero() -> None:
    fragments = np.array([[[0, 5, 7], [2**64 - 1, 3, 0]]], dtype=np.uint64)
    lut = (
        np.array([7, 5, 2**64 - 1], dtype=np.uint64),  # unsorted on purpose
        np.array([5, 5, 1], dtype=np.uint64),
    )
    out = relabel(fragments, lut)
    assert out.dtype == np.uint64
    assert out.tolist() == [[[0, 5, 5], [1, 3, 0]]]  # 3 is not in the table: its own id
    assert relabel(fragments, (np.zeros(0), np.zeros(0))).tolist() == fragments.tolist()


def test_whole_volume_leaves_fragments_alone_and_handles_empty() -> None:
    affs, fragments = _dense_case(4)
    before = fragments.copy()
    result = segment_whole_volume(affs, fragments, [0.5, 0.2], "hist_quant_75")
    assert list(result) == [0.2, 0.5]
    assert np.array_equal(fragments, before)
    # Segment ids are fragment ids.
    assert set(np.unique(result[0.5])) <= set(np.unique(fragments))
    empty = np.zeros_like(fragments)
    assert not segment_whole_volume(affs, empty, [0.5], "mean")[0.5].any()
    edges = agglomerate_block(affs, empty, "mean")
    assert edges.u.size == edges.merge_score.size == 0


def test_block_edges_are_complete() -> None:
    affs, fragments = _dense_case(5)
    edges = agglomerate_block(affs, fragments, "hist_quant_75")
    assert edges.merge_score.dtype == np.float32
    assert np.all(edges.u < edges.v)
    assert np.all((edges.merge_score >= 0) & (edges.merge_score <= 1))
    assert np.all(edges.contact > 0)
    # Every merge of the history lands on at least one edge below 1.
    assert (edges.merge_score < 1).sum() >= np.unique(fragments).size - np.unique(
        segment_whole_volume(affs, fragments, [1.0], "hist_quant_75")[1.0]
    ).size


def test_merge_function_names() -> None:
    for name in ("hist_quant_10", "hist_quant_25", "hist_quant_50", "hist_quant_75"):
        assert is_prebuilt(name)
    assert is_prebuilt("hist_quant_90") and is_prebuilt("mean")
    assert "75" in scoring_function("hist_quant_75")
    assert not is_prebuilt("max") and not is_prebuilt("min")
    assert set(MERGE_FUNCTIONS) == {
        "hist_quant_10",
        "hist_quant_25",
        "hist_quant_50",
        "hist_quant_75",
        "hist_quant_90",
        "mean",
        "max",
        "min",
    }
    with pytest.raises(InputError, match="unknown merge function"):
        scoring_function("median")
    with pytest.raises(InputError, match=r"\(0, 1\]"):
        merge_history(np.zeros((3, 1, 1, 2), np.float32), np.ones((1, 1, 2)), "x", thresholds=[0])


@pytest.mark.skipif(
    importlib.util.find_spec("witty") is not None, reason="witty would compile it (minutes)"
)
def test_unbuilt_merge_function_is_an_input_error() -> None:
    affs, fragments = _dense_case(6)
    with pytest.raises(InputError, match=r"not prebuilt|no prebuilt"):
        agglomerate_block(affs, fragments, "max")


def test_quiet_stdout_sends_fd_1_to_stderr(capfd: pytest.CaptureFixture[str]) -> None:
    affs, fragments = _dense_case(7)
    with quiet_stdout():
        os.write(1, b"from fd 1\n")
        segment_whole_volume(affs, fragments, [0.5], "mean")
    os.write(1, b"after\n")
    out, err = capfd.readouterr()
    assert "from fd 1" in err and "merging until threshold" in err
    assert out == "after\n"
