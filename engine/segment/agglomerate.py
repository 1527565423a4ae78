"""Agglomeration of fragments with waterz: merge scores per RAG edge, then segments.

Blockwise, a worker runs waterz on its block once, up to threshold 1.0, and turns the
merge history into one score per RAG edge (:func:`agglomerate_block`): at every threshold
above it, waterz has both fragments in one segment, at none below. Any number of
thresholds is then a cheap graph operation (:func:`segment_lut`, :func:`relabel`), without
waterz. On one volume this reproduces waterz's own segmentations
(:func:`segment_whole_volume`) exactly, which the tests check; across blocks each edge
keeps the score of the block that wrote it last, the usual blockwise approximation.

The scores are waterz's float32 scores, and thresholds are compared in float32, as waterz
does (it takes ``float threshold``): a score merges at ``t`` iff
``float32(score) < float32(t)``.

waterz writes progress to stdout from C++ (``std::cout``) and Cython (``print``); wrap
calls in :func:`quiet_stdout` to send it to stderr instead.
"""

from __future__ import annotations

import ctypes
import importlib.util
import logging
import os
import sys
from collections.abc import Iterator, Sequence
from contextlib import contextmanager, redirect_stdout
from typing import Any, NamedTuple

import numpy as np
import scipy.sparse as sparse
from scipy.sparse.csgraph import connected_components

from engine.errors import EngineError, InputError
from engine.segment.rag import Edges, edge_stats

logger = logging.getLogger(__name__)


def _hist_quant(quantile: int) -> str:
    # InitWithMax=false: the histogram of all affinities from the start, as the paper's
    # hist_quant_*; true would start from the maximum affinity only.
    return f"OneMinus<HistogramQuantileAffinity<RegionGraphType,{quantile},ScoreValue,256,false>>"


MERGE_FUNCTIONS: dict[str, str] = {
    "hist_quant_10": _hist_quant(10),
    "hist_quant_25": _hist_quant(25),
    "hist_quant_50": _hist_quant(50),
    "hist_quant_75": _hist_quant(75),
    "hist_quant_90": _hist_quant(90),
    "mean": "OneMinus<MeanAffinity<RegionGraphType,ScoreValue>>",
    # Not among waterz's prebuilt variants: compiled on first use, which needs witty, a
    # C++ compiler and the boost headers (see scoring_function).
    "max": "OneMinus<MaxAffinity<RegionGraphType,ScoreValue>>",
    "min": "OneMinus<MinAffinity<RegionGraphType,ScoreValue>>",
}
"""config.segment.merge_function → waterz scoring function (a C++ type)."""


class MergeHistory(NamedTuple):
    """waterz's merges in order: region ``a`` absorbed region ``b`` at ``score``."""

    a: np.ndarray
    """uint64 fragment ids (a member of each region; waterz names a region by one)."""
    b: np.ndarray
    """uint64."""
    score: np.ndarray
    """float32, as waterz popped it: not necessarily monotone (see effective_scores)."""
    floor: np.ndarray
    """float32: the threshold waterz had stopped at before this merge (-inf: none)."""


def scoring_function(merge_function: str) -> str:
    """The waterz scoring function for a ``config.segment.merge_function`` name.

    hist_quant_* and mean map to variants waterz ships prebuilt; max and min do not exist
    prebuilt (waterz would compile them on first use, which needs witty, a C++ compiler
    and the boost headers: see :func:`is_prebuilt`). Raises InputError for unknown names.
    """
    try:
        return MERGE_FUNCTIONS[merge_function]
    except KeyError:
        raise InputError(
            f"unknown merge function {merge_function!r}; use one of {', '.join(MERGE_FUNCTIONS)}"
        ) from None


def is_prebuilt(merge_function: str, discretize_queue: int = 0) -> bool:
    """Whether waterz ships this merge function and queue compiled (no compilation)."""
    return _prebuilt(scoring_function(merge_function), discretize_queue)


def agglomerate_block(
    affs: np.ndarray,
    fragments: np.ndarray,
    merge_function: str,
    *,
    thresholds: Sequence[float] = (),
    discretize_queue: int = 0,
) -> Edges:
    """Every RAG edge of a block with the score at which waterz merges its two fragments.

    ``affs`` is ``(C, z, y, x)`` float in [0, 1] (channels 0-2: z, y, x nearest
    neighbours, see engine.segment.rag.edge_stats); ``fragments`` is ``(z, y, x)`` integer, 0 for
    background, ids of any size (uint64). Returns the pairs of
    ``edge_stats(fragments, affs)`` in its order (sorted by (u, v)) with their mean
    affinity and contact, and as ``merge_score`` (float32 values) the score of the merge
    that first puts u and v in one region (see :func:`effective_scores`), 1.0 if waterz
    never does: ``segment_lut(u, v, merge_score, nodes, t)`` then is waterz's own
    segmentation at ``t``. This is exact at the given ``thresholds`` (pass
    ``config.segment.thresholds``, each in (0, 1]) in every case, bin queue included, and
    at any other threshold except where waterz's float rounding puts a score within a few
    float32 steps of it (see effective_scores); the thresholds cost nothing extra (one
    waterz run either way).

    ``discretize_queue=0`` (an exact priority queue, the default) is what makes other
    thresholds exact: with a bin queue, scores within a bin are popped in insertion order,
    not sorted, so a merge may follow a pop of a higher score, and waterz at a threshold
    between the two stops before that merge while thresholding the history includes it.
    """
    function = scoring_function(merge_function)
    if discretize_queue:
        logger.warning(
            "waterz with a bin queue (%d bins): merge scores are exact only at the "
            "thresholds given (%s), approximate elsewhere",
            discretize_queue,
            sorted(thresholds),
        )
    stats = edge_stats(fragments, affs)
    scores = np.ones(stats.u.size, dtype=np.float32)
    if stats.u.size:
        history = merge_history(
            affs, fragments, function, thresholds=thresholds, discretize_queue=discretize_queue
        )
        scores = _first_merge_scores(
            stats.u, stats.v, history.a, history.b, effective_scores(history)
        )
    return Edges(
        u=stats.u,
        v=stats.v,
        merge_score=scores,
        mean_affinity=stats.mean_affinity,
        contact=stats.contact,
    )


def merge_history(
    affs: np.ndarray,
    fragments: np.ndarray,
    function: str,
    *,
    thresholds: Sequence[float] = (),
    discretize_queue: int = 0,
) -> MergeHistory:
    """waterz's merges up to threshold 1.0 for these fragments, with ids of ``fragments``.

    ``function`` is a waterz scoring function (see :data:`MERGE_FUNCTIONS`). waterz runs
    once, stopping at each of ``thresholds`` on the way (which does not change what it
    merges), so each merge's ``floor`` says past which of them it happened.
    """
    stops = sorted({float(t) for t in thresholds} | {1.0})
    if stops[0] <= 0.0 or stops[-1] > 1.0:
        raise InputError(f"thresholds must be in (0, 1], not {sorted(thresholds)}")
    ids, compact = _compact(fragments)
    a: list[int] = []
    b: list[int] = []
    score: list[float] = []
    floor: list[float] = []
    previous = -np.inf
    results = _waterz(affs, compact, stops, function, discretize_queue, history=True)
    for stop, (_, merges) in zip(stops, results):
        for merge in merges:
            a.append(merge["a"])
            b.append(merge["b"])
            score.append(merge["score"])
        floor.extend([previous] * len(merges))
        previous = stop
    return MergeHistory(
        a=ids[np.array(a, dtype=np.int64)],
        b=ids[np.array(b, dtype=np.int64)],
        score=np.array(score, dtype=np.float32),
        floor=np.array(floor, dtype=np.float64).astype(np.float32),
    )


def effective_scores(history: MergeHistory) -> np.ndarray:
    """Per merge, the score that decides at which thresholds waterz has performed it:
    merge ``k`` is done at ``t`` iff ``effective[k] < float32(t)``. float32, monotone.

    waterz pops edges from a priority queue and stops at the first pop whose score is not
    below the threshold; every pop is either a merge (recorded in the history) or not (a
    deleted edge, or a stale one that is re-scored and pushed back; not recorded). The pops
    are deterministic and do not depend on the threshold, so waterz at ``t`` performs
    exactly the merges before the first pop scoring >= t. With the exact queue
    (``discretize_queue=0``), what is popped is the smallest score queued, and re-scoring
    only raises a score (the merge functions here score edge statistics, and the merged
    statistic of two edges is at least the cheaper one's), so nothing pushed later scores
    lower: a non-merge pop at ``s`` implies every later merge scores >= s. The threshold
    of merge ``k`` is therefore decided by the merges up to it: the running maximum of
    their scores. In exact arithmetic the raw scores would already be monotone; they are
    not where the float32 mean of two merged edges rounds a step below the popped score,
    and the running maximum absorbs that. (A bin queue pops unsorted within a bin, the
    argument fails, and only the floors below are exact.)

    One gap remains, from that rounding: the unrecorded stale pop right before such a
    merge scores a few float32 steps above it, and may exceed the running maximum; at a
    threshold in between, waterz stops before the merge and the running maximum does not.
    Where waterz stopped on the way (``history.floor``, from ``thresholds``) is known
    exactly, and raising each merge to its floor closes the gap at those thresholds.
    Histogram quantiles count in integers and never round this way.
    """
    effective: np.ndarray = np.maximum(np.maximum.accumulate(history.score), history.floor)
    return effective


def _first_merge_scores(
    u: np.ndarray, v: np.ndarray, a: np.ndarray, b: np.ndarray, scores: np.ndarray
) -> np.ndarray:
    """For each edge (u, v), ``scores[k]`` of the first merge ``k`` of regions ``a[k]``,
    ``b[k]`` after which u and v are in one region; 1.0 if none.

    Union-by-size over the merges, scanning the incident edges of the smaller side only:
    each node changes side O(log N) times, so this is O(E log N).
    """
    nodes, inverse = np.unique(np.concatenate([u, v, a, b]), return_inverse=True)
    edge_count = u.size
    merge_count = a.size
    cu = inverse[:edge_count]
    cv = inverse[edge_count : 2 * edge_count]
    ma = inverse[2 * edge_count : 2 * edge_count + merge_count].tolist()
    mb = inverse[2 * edge_count + merge_count :].tolist()

    # Incident edges per node, CSR-like: ends[start[x]:start[x+1]] are x's neighbours
    # through edges edge_of[...].
    source = np.concatenate([cu, cv])
    order = np.argsort(source, kind="stable")
    ends = np.concatenate([cv, cu])[order].tolist()
    edge_of = np.concatenate([np.arange(edge_count), np.arange(edge_count)])[order].tolist()
    start = np.concatenate([[0], np.cumsum(np.bincount(source, minlength=nodes.size))]).tolist()

    root = list(range(nodes.size))
    members: list[list[int]] = [[x] for x in range(nodes.size)]
    first: list[int] = [-1] * edge_count
    for k, (x_a, x_b) in enumerate(zip(ma, mb)):
        big, small = root[x_a], root[x_b]
        if big == small:
            raise EngineError(f"waterz merge {k} joins a region with itself")
        if len(members[big]) < len(members[small]):
            big, small = small, big
        joined = 0
        for x in members[small]:
            for j in range(start[x], start[x + 1]):
                if root[ends[j]] == big:
                    first[edge_of[j]] = k
                    joined += 1
        if not joined:
            # waterz only merges regions that share an edge of its region graph, which is
            # the pair set of edge_stats; anything else means the two disagree.
            raise EngineError(f"waterz merge {k} joins regions that share no RAG edge")
        for x in members[small]:
            root[x] = big
        members[big].extend(members[small])
        members[small] = []

    first_merge = np.array(first, dtype=np.int64)
    out = np.ones(edge_count, dtype=np.float32)
    merged = first_merge >= 0
    out[merged] = np.asarray(scores, dtype=np.float32)[first_merge[merged]]
    return out


def segment_lut(
    edge_u: np.ndarray,
    edge_v: np.ndarray,
    scores: np.ndarray,
    node_ids: np.ndarray,
    threshold: float,
) -> tuple[np.ndarray, np.ndarray]:
    """The segmentation at ``threshold`` as a lookup table ``(fragment_ids, segment_ids)``.

    Segments are the connected components of the edges with
    ``float32(score) < float32(threshold)`` (NaN never merges). Every node of
    ``node_ids`` and every edge end is in the table, sorted by fragment id; a fragment
    without merged edges is a segment of its own. A segment's id is the smallest fragment
    id in it: deterministic, independent of blocks and edge order, unique (fragment ids
    are), and the same at every threshold for as long as that fragment is the smallest.
    """
    u = np.asarray(edge_u, dtype=np.uint64)
    v = np.asarray(edge_v, dtype=np.uint64)
    score = np.asarray(scores)
    if not u.shape == v.shape == score.shape:
        raise InputError(f"edge arrays differ in shape: {u.shape}, {v.shape}, {score.shape}")
    nodes = np.unique(np.concatenate([np.asarray(node_ids, dtype=np.uint64).ravel(), u, v]))
    if nodes.size and nodes[0] == 0:
        raise InputError("fragment id 0 is background: it cannot be a RAG node")
    # waterz compares float32 scores with a float32 threshold; doing the same keeps a
    # score equal to float32(threshold) on the same side as in waterz.
    keep = score.astype(np.float32) < np.float32(threshold)
    iu = np.searchsorted(nodes, u[keep])
    iv = np.searchsorted(nodes, v[keep])
    graph = sparse.coo_matrix(
        (np.ones(iu.size, dtype=np.int8), (iu, iv)), shape=(nodes.size, nodes.size)
    )
    _, component = connected_components(graph, directed=False)
    # nodes is sorted, so each component's first node is its smallest fragment.
    _, first = np.unique(component, return_index=True)
    return nodes, nodes[first][component]


def relabel(fragments: np.ndarray, lut: tuple[np.ndarray, np.ndarray]) -> np.ndarray:
    """Map fragments to segments through ``lut = (fragment_ids, segment_ids)``.

    0 stays 0; an id missing from the table keeps its own id (a segment of its own, as
    in segment_lut). Returns a new uint64 array of the shape of ``fragments``.
    """
    keys = np.asarray(lut[0], dtype=np.uint64)
    values = np.asarray(lut[1], dtype=np.uint64)
    if keys.shape != values.shape or keys.ndim != 1:
        raise InputError(
            f"lookup table arrays must be 1D of one length: {keys.shape}, {values.shape}"
        )
    if keys.size > 1 and not np.all(keys[1:] > keys[:-1]):
        order = np.argsort(keys, kind="stable")
        keys, values = keys[order], values[order]
        if np.any(keys[1:] == keys[:-1]):
            raise InputError("lookup table maps a fragment id twice")
    flat = np.asarray(fragments, dtype=np.uint64).ravel()
    if keys.size == 0:
        return flat.reshape(np.shape(fragments)).copy()
    index = np.minimum(np.searchsorted(keys, flat), keys.size - 1)
    found = keys[index] == flat
    out = np.where(found, values[index], flat)
    out[flat == 0] = 0
    return out.reshape(np.shape(fragments))


def segment_whole_volume(
    affs: np.ndarray,
    fragments: np.ndarray,
    thresholds: Sequence[float],
    merge_function: str,
    *,
    discretize_queue: int = 0,
) -> dict[float, np.ndarray]:
    """waterz's own segmentations of one whole volume, from these fragments: the reference.

    Returns ``{threshold: segmentation}`` (uint64, shape of ``fragments``), segment ids
    being fragment ids (of one member, waterz's choice). ``fragments`` is not modified
    (waterz writes into the array it is given, so it gets a copy).
    """
    function = scoring_function(merge_function)
    wanted = sorted({float(t) for t in thresholds})
    ids, compact = _compact(fragments)
    if ids.size == 1:  # background only: nothing to merge, and nothing for waterz to do
        return {t: np.zeros(compact.shape, dtype=np.uint64) for t in wanted}
    result = _waterz(affs, compact, wanted, function, discretize_queue, history=False)
    # The generator writes every threshold's segmentation into the same array: map each
    # one to fragment ids (a new array) before the next.
    return {t: ids[segmentation] for t, segmentation in zip(wanted, result)}


@contextmanager
def quiet_stdout() -> Iterator[None]:
    """Send everything written to stdout meanwhile to stderr.

    At the file-descriptor level (fd 1 onto fd 2), so that C and C++ output (waterz's
    ``std::cout``) moves too, and at the Python level (``sys.stdout``), which need not
    write through fd 1 (pytest's capture does not). Process-wide: not for threads that
    print to stdout on purpose meanwhile.
    """
    sys.stdout.flush()
    _flush_c_stdio()
    saved = os.dup(1)
    try:
        os.dup2(2, 1)
        with redirect_stdout(sys.stderr):
            yield
    finally:
        sys.stdout.flush()
        _flush_c_stdio()
        os.dup2(saved, 1)
        os.close(saved)


def _flush_c_stdio() -> None:
    """fflush(NULL): C stdio buffers go out before fd 1 changes hands."""
    try:
        ctypes.CDLL(None).fflush(None)
    except (OSError, AttributeError):  # no C library to flush through (not Linux/macOS)
        pass


def _compact(fragments: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Fragments as dense ids 0..n (0: background) and the ids they stand for.

    waterz allocates per id up to the largest one, so block-unique ids (up to 2**64)
    must be made dense first. ``ids[compact]`` is the original volume; ``ids[0] == 0``.
    """
    fragments = np.asarray(fragments)
    if fragments.ndim != 3:
        raise InputError(f"fragments must be 3D (z, y, x), not of shape {fragments.shape}")
    ids, inverse = np.unique(fragments.astype(np.uint64), return_inverse=True)
    compact = inverse.reshape(fragments.shape).astype(np.uint64)
    if ids.size == 0 or ids[0] != 0:
        ids = np.concatenate([np.zeros(1, dtype=np.uint64), ids])
        compact += np.uint64(1)
    return ids, np.ascontiguousarray(compact)


def _waterz(
    affs: np.ndarray,
    compact: np.ndarray,
    thresholds: list[float],
    function: str,
    discretize_queue: int,
    *,
    history: bool,
) -> Iterator[Any]:
    """Start waterz on dense fragments (it writes into ``compact``): per threshold, the
    segmentation, or (segmentation, merge history as a list of dicts a, b, c, score)."""
    import waterz  # lazy: a compiled extension only agglomeration needs

    affs = np.asarray(affs)
    if affs.ndim != 4 or affs.shape[0] < 3 or affs.shape[1:] != compact.shape:
        raise InputError(
            f"affinities (channels >= 3, z, y, x) do not fit fragments {compact.shape}: "
            f"{affs.shape}"
        )
    if not _prebuilt(function, discretize_queue):
        if importlib.util.find_spec("witty") is None:
            raise InputError(
                f"waterz has no prebuilt {function} with discretize_queue={discretize_queue}, "
                "and compiling one needs witty, a C++ compiler and the boost headers; use "
                "merge function hist_quant_* or mean with discretize_queue 0 or 256"
            )
        logger.warning("waterz compiles %s on first use; this takes minutes", function)
    return waterz.agglomerate(
        np.ascontiguousarray(affs[:3], dtype=np.float32),
        thresholds,
        fragments=compact,
        scoring_function=function,
        discretize_queue=discretize_queue,
        return_merge_history=history,
    )


def _prebuilt(function: str, discretize_queue: int) -> bool:
    # waterz._codegen is private, but it is where waterz itself lists what it prebuilt.
    from waterz._codegen import iter_specs, normalize

    wanted = (normalize(function), int(discretize_queue))
    return any((normalize(f), int(q)) == wanted for f, q in iter_specs())
