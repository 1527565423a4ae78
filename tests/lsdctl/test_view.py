"""`lsdctl view`: which layers, where, at which threshold; the arrays as neuroglancer gets
them (OME-NGFF over HTTP, read back with ome-zarr); the neuroglancer state; bad input;
and a real headless Chromium drawing the data."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from collections.abc import Iterator
from io import BytesIO
from pathlib import Path

import numpy as np
import pytest
import zarr
from ome_zarr.io import parse_url
from ome_zarr.reader import Reader

from engine.contract import EventWriter
from engine.runs.spec import RunSpec, write_spec
from lsdctl.view.plan import ViewPlan, plan_view
from lsdctl.view.server import ZarrServer
from lsdctl.view.viewer import apply_plan, ome_entry
from tests.lsdctl.conftest import CliCaller
from tests.lsdctl.view_project import (
    EVALUATE,
    OUTPUT_OFFSET,
    OUTPUT_SHAPE,
    PREDICT,
    SEGMENT,
    SHAPE,
    VOLUME_OFFSET,
    VOXEL,
    ViewProject,
    make_view_project,
)

ROOT = Path(__file__).parents[2]
CHROMIUM = Path("/usr/bin/chromium")


@pytest.fixture
def made(projects: Path) -> ViewProject:
    return make_view_project(projects)


@pytest.fixture
def server() -> Iterator[ZarrServer]:
    served = ZarrServer()
    yield served
    served.stop()


def _layers(plan: ViewPlan) -> dict[str, tuple[str, tuple[int, ...], tuple[int, ...], bool]]:
    return {
        layer.name: (layer.kind, layer.voxel_size, layer.offset, layer.visible)
        for layer in plan.layers
    }


def test_a_project_shows_its_newest_runs_at_the_best_threshold(made: ViewProject) -> None:
    plan = plan_view(made.path)
    assert _layers(plan) == {
        "raw": ("image", VOXEL, VOLUME_OFFSET, True),
        "labels": ("segmentation", VOXEL, VOLUME_OFFSET, False),
        "pred_lsds": ("image", VOXEL, OUTPUT_OFFSET, False),
        "pred_affs": ("image", VOXEL, OUTPUT_OFFSET, False),
        "fragments": ("segmentation", VOXEL, OUTPUT_OFFSET, False),
        "segmentation_0.50": ("segmentation", VOXEL, OUTPUT_OFFSET, True),
    }
    channels = {layer.name: layer.channels for layer in plan.layers}
    assert channels["pred_lsds"] == 10 and channels["pred_affs"] == 3 and channels["raw"] == 0
    assert plan.threshold == 0.5
    assert any(f"best VOI of evaluate run {EVALUATE}" in note for note in plan.notes)
    assert plan.voxel_size == VOXEL
    # The view opens at the centre of the volume (raw), in nm.
    assert plan.centre == tuple(o + s * v / 2 for o, s, v in zip(VOLUME_OFFSET, SHAPE, VOXEL))


def test_the_threshold_chosen_on_validation_wins_over_the_best_on_test(projects: Path) -> None:
    made = make_view_project(projects, validated=0.7)
    plan = plan_view(made.path)
    assert plan.threshold == 0.7 and plan.layers[-1].name == "segmentation_0.70"
    assert any("chosen on validation" in note for note in plan.notes)
    given = plan_view(made.path, SEGMENT, threshold=0.3)
    assert given.threshold == 0.3 and given.layers[-1].name == "segmentation_0.30"


def test_each_kind_of_run_shows_what_it_made(made: ViewProject) -> None:
    predicted = plan_view(made.path, PREDICT)
    assert [layer.name for layer in predicted.layers] == ["raw", "labels", "pred_lsds", "pred_affs"]
    assert predicted.threshold is None
    assert [layer.name for layer in predicted.layers if layer.visible] == ["raw", "pred_affs"]
    # A segment run brings the predictions it segmented; an evaluate run its segment run.
    for run in (SEGMENT, EVALUATE):
        plan = plan_view(made.path, run)
        assert _layers(plan) == _layers(plan_view(made.path)), run
        assert plan.title.startswith(run)


def test_served_layers_read_back_as_ome_ngff_images(made: ViewProject, server: ZarrServer) -> None:
    """What neuroglancer's zarr:// source reads, read by ome-zarr (napari's reader)."""
    for index, layer in enumerate(plan_view(made.path).layers):
        url = server.add(str(index), layer.path, ome_entry(layer))
        node = next(iter(Reader(parse_url(url))()))
        scale, translation = node.metadata["coordinateTransformations"][0]
        channel = [1.0] if layer.channels else []
        assert scale["scale"] == [*channel, *layer.voxel_size], layer.name
        assert translation["translation"] == [*[0.0] * len(channel), *layer.offset], layer.name
        axes = [a["name"] for a in node.metadata["axes"]]
        assert axes == ["c", "z", "y", "x"] if layer.channels else ["z", "y", "x"]
        on_disk = zarr.open_array(str(layer.path), mode="r")[...]
        assert np.array_equal(np.asarray(node.data[0]), on_disk), layer.name
    # Nothing else on the disk is served.
    base = server.url
    for path in ("/0/s0/../../labels/.zarray", "/9/.zattrs", "/0/raw/.zarray", "/../x"):
        with pytest.raises(urllib.error.HTTPError) as refused:
            urllib.request.urlopen(base + path, timeout=5)
        assert refused.value.code == 404
    with urllib.request.urlopen(base + "/0/s0/.zarray", timeout=5) as answer:
        assert answer.headers["Access-Control-Allow-Origin"] == "*"


def test_the_neuroglancer_state_names_axes_scales_shaders_and_position(
    made: ViewProject, server: ZarrServer
) -> None:
    import neuroglancer

    plan = plan_view(made.path)
    state = neuroglancer.ViewerState()
    apply_plan(state, plan, server)
    assert list(state.dimensions.names) == ["x", "y", "z"]
    assert list(state.dimensions.scales) == pytest.approx([8e-9, 8e-9, 40e-9])
    centre = [(c / v) - 0.5 for c, v in zip(plan.centre, VOXEL)]
    assert list(state.position) == pytest.approx(list(reversed(centre)))
    layers = {layer.name: layer for layer in state.layers}
    assert list(layers) == [layer.name for layer in plan.layers]
    assert layers["labels"].type == "segmentation" and layers["raw"].type == "image"
    assert layers["segmentation_0.50"].visible and not layers["fragments"].visible
    lsds = layers["pred_lsds"].layer
    assert "getDataValue(red)" in lsds.shader and "max=9" in lsds.shader
    assert "getDataValue(2)" in layers["pred_affs"].layer.shader
    source = lsds.source[0]
    assert source.url.startswith("zarr://http://127.0.0.1:")
    assert list(source.transform.output_dimensions.names) == ["c^", "z", "y", "x"]


@pytest.mark.slow
def test_a_train_run_shows_its_latest_snapshot_aligned(projects: Path, server: ZarrServer) -> None:
    import neuroglancer

    from engine.data.synth import synthesize
    from engine.data.volume import write_volume
    from engine.project import config as cfg
    from engine.project.layout import init_project
    from engine.train.trainer import main as train_main
    from tests.engine.train.train_runs import make_run_dir

    project = init_project("snap", "tiny", root=projects).path
    settings = {"iterations": 2, "snapshot_every": 1, "validate_every": 0}
    config = cfg.from_preset("tiny", {"system": {"num_workers": 0}, "train": settings})
    voxel = tuple(config.data.voxel_size)
    raw, labels = synthesize((56, 56, 56), voxel, seed=2)
    write_volume(project / "train" / "v.zarr", raw, labels, voxel)
    run_dir = make_run_dir(project, config, name="train-snap")
    assert train_main([str(run_dir)]) == 0

    plan = plan_view(project, "train-snap")
    assert plan.title == "train-snap: iteration 2"  # the latest of two snapshots
    layers = {layer.name: layer for layer in plan.layers}
    assert list(layers) == ["raw", "labels", "gt_lsds", "pred_lsds", "gt_affs", "pred_affs"]
    input_shape = np.array(config.model.input_shape)
    assert layers["raw"].offset == (0, 0, 0) and layers["raw"].shape == tuple(input_shape)
    output = np.array(layers["pred_affs"].shape)
    centred = tuple(int(o) for o in (input_shape - output) // 2 * np.array(voxel))
    for name in ("labels", "gt_lsds", "pred_lsds", "gt_affs", "pred_affs"):
        assert layers[name].offset == centred and layers[name].voxel_size == voxel, name
    assert layers["raw"].value_range is not None  # float raw: grey over its own range
    # The project alone shows the same, having nothing predicted yet.
    assert [layer.name for layer in plan_view(project).layers] == list(layers)
    state = neuroglancer.ViewerState()
    apply_plan(state, plan, server)
    assert "invlerp" in state.layers["raw"].shader


# ---- the command -------------------------------------------------------------------------
def test_bad_input_is_one_line_and_exit_2(made: ViewProject, cli: CliCaller) -> None:
    name = made.path.name
    cli.bad("view", "--project", name, "nope", match=f"no run 'nope' in project {name}")
    cli.bad("view", "--project", name, "--volume", "other", match="no volume 'other'")
    cli.bad("view", "--project", name, "--threshold", "0.4", match="it has 0.30, 0.50, 0.70")
    cli.bad("view", "--project", "absent", match="no project 'absent'")
    # A run with nothing to show: a failed predict run without outputs, a train run
    # without snapshots.
    for run_id, kind in (("predict-failed", "predict"), ("train-young", "train")):
        run_dir = made.path / "runs" / run_id
        spec = RunSpec.model_validate(
            {"id": run_id, "kind": kind, "project": str(made.path), "config": _config()}
        )
        write_spec(run_dir, spec)
        events = EventWriter(run_dir / "events.jsonl")
        if kind == "predict":
            events.emit("error", message="worker died")
        events.close()
    cli.bad("view", "--project", name, "predict-failed", match="no outputs to show yet")
    cli.bad("view", "--project", name, "train-young", match="no snapshot to show yet")
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        cli.bad("view", "--project", name, "--port", str(port), match=f"port {port}")


def _config() -> dict:  # type: ignore[type-arg]
    from engine.project import config as cfg

    return cfg.from_preset("tiny").model_dump(mode="json")


def _start_cli(projects: Path, *args: str) -> tuple[subprocess.Popen[str], str, list[str]]:
    """`lsdctl view ARGS` in a process of its own; (process, viewer URL, lines before it)."""
    process = subprocess.Popen(
        [sys.executable, "-c", "from lsdctl.cli.main import main; main()", "view", *args],
        cwd=ROOT,
        env={**os.environ, "LSDCTL_PROJECTS": str(projects)},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert process.stdout is not None
    lines: list[str] = []
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        line = process.stdout.readline()
        if not line:
            break
        lines.append(line.strip())
        if line.startswith("viewer: "):
            return process, line.split(" ", 1)[1].strip(), lines
    process.kill()
    raise AssertionError(f"no URL: {lines} {process.stderr.read() if process.stderr else ''}")


def test_the_command_prints_the_url_and_ctrl_c_stops_it(made: ViewProject, projects: Path) -> None:
    process, url, lines = _start_cli(projects, "--project", made.path.name)
    try:
        assert url.startswith("http://127.0.0.1:")
        assert "layers: raw, labels, pred_lsds, pred_affs, fragments, segmentation_0.50" in lines
        with urllib.request.urlopen(url, timeout=10) as page:
            assert page.status == 200 and b"neuroglancer" in page.read().lower()
    finally:
        process.send_signal(signal.SIGINT)
        code = process.wait(timeout=20)
    assert code == 0, process.stderr.read() if process.stderr else ""
    with pytest.raises(OSError):
        urllib.request.urlopen(url, timeout=2)


def test_the_tui_viewer_process_serves_until_closed(made: ViewProject) -> None:
    """What `v` starts in the TUI: `python -m lsdctl.view PROJECT_DIR RUN`."""
    import asyncio

    from lsdctl.tui.viewers import Viewers

    async def scenario() -> str:
        viewers = Viewers()
        url = await viewers.open(str(made.path), SEGMENT)
        assert await viewers.open(str(made.path), SEGMENT) == url  # the same viewer
        assert viewers.url(SEGMENT) == url
        with urllib.request.urlopen(url, timeout=10) as page:
            assert page.status == 200
        await viewers.close()
        assert viewers.url(SEGMENT) is None
        return url

    url = asyncio.run(scenario())
    with pytest.raises(OSError):
        urllib.request.urlopen(url, timeout=2)


# ---- a real browser ----------------------------------------------------------------------
@pytest.mark.slow
def test_chromium_draws_the_volume_and_the_segmentation(made: ViewProject, tmp_path: Path) -> None:
    if not CHROMIUM.exists():
        pytest.skip(
            "no /usr/bin/chromium: `apt-get install chromium` (what .ci/run does where it can)"
        )
    from PIL import Image

    from lsdctl.view.viewer import start_viewer

    session = start_viewer(plan_view(made.path))
    profile = tempfile.mkdtemp(dir=tmp_path)
    browser = subprocess.Popen(
        [
            str(CHROMIUM),
            "--headless=new",
            "--no-sandbox",
            "--use-gl=angle",
            "--use-angle=swiftshader",
            "--enable-unsafe-swiftshader",
            "--ignore-gpu-blocklist",
            "--remote-debugging-port=0",
            f"--user-data-dir={profile}",
            "--window-size=1000,700",
            session.url,
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        # neuroglancer's own screenshot: taken by the page once every chunk is drawn.
        done = threading.Event()
        replies: list[object] = []

        def replied(reply: object) -> None:
            replies.append(reply)
            done.set()

        session.viewer.async_screenshot(replied)
        assert done.wait(120), "the browser never sent a screenshot"
    finally:
        browser.terminate()
        browser.wait(timeout=20)
        session.stop()
    png = replies[0].screenshot.image  # type: ignore[attr-defined]
    (tmp_path / "viewer.png").write_bytes(png)
    pixels = np.asarray(Image.open(BytesIO(png)).convert("RGB")).astype(int)
    assert pixels.shape[0] > 300 and pixels.shape[1] > 300
    # The top-left panel (x-y) is drawn: raw's texture, not one flat colour.
    panel = pixels[pixels.shape[0] // 8 : pixels.shape[0] // 2, 10 : pixels.shape[1] // 2 - 10]
    assert panel.std() > 20, "the x-y panel is blank"  # raw drawn: about 35; nothing: 10
    # The segmentation's colours: raw is grey, so colour comes from the segments.
    saturation = panel.max(axis=2) - panel.min(axis=2)
    coloured = panel[saturation > 40]
    assert len(coloured) > 0.2 * saturation.size, "no segmentation colours"
    hues = {tuple(c // 64) for c in coloured}
    assert len(hues) >= 4, f"the segments share too few colours: {hues}"


def test_output_geometry_is_what_the_fixture_wrote() -> None:
    """The fixture's outputs lie inside its volume (else the tests above prove little)."""
    for o, v, s, n, vs in zip(OUTPUT_OFFSET, VOLUME_OFFSET, SHAPE, OUTPUT_SHAPE, VOXEL):
        assert v < o and o + n * vs < v + s * vs
