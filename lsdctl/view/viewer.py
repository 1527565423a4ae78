"""A neuroglancer viewer of a ViewPlan: layers served lazily as OME-NGFF zarr sources.

neuroglancer (the package bundles the web client) serves the viewer page on 127.0.0.1;
engine data goes through a ZarrServer of our own, as `zarr://` sources that the client
reads chunk by chunk, so a large volume never has to fit in memory. The viewer's axes
are named x, y, z: neuroglancer matches a source's dimensions to them by name, and the
OME metadata names the arrays' axes z, y, x.
"""

from __future__ import annotations

import socket
import threading
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from engine.data import ome
from lsdctl.errors import UsageError
from lsdctl.view.plan import Layer, ViewPlan
from lsdctl.view.server import ZarrServer

_HOST = "127.0.0.1"
_AXES = ("z", "y", "x")

# Three channels of the LSDs as RGB; which three, the user picks (the others: variances,
# Pearson coefficients, size).
_LSDS_SHADER = """#uicontrol int red slider(min=0, max={last}, default=0)
#uicontrol int green slider(min=0, max={last}, default={g})
#uicontrol int blue slider(min=0, max={last}, default={b})
#uicontrol float brightness slider(min=-1, max=1, default=0)
void main() {{
  emitRGB(vec3(toNormalized(getDataValue(red)), toNormalized(getDataValue(green)),
               toNormalized(getDataValue(blue))) + brightness);
}}
"""
_AFFS_SHADER = """void main() {{
  emitRGB(vec3({r}, {g}, {b}));
}}
"""
_GREY_SHADER = """#uicontrol invlerp normalized(range=[{low}, {high}])
void main() {{
  emitGrayscale(normalized());
}}
"""


@dataclass
class ViewerSession:
    """A running viewer: its URL, and `stop()`."""

    url: str
    viewer: Any
    server: ZarrServer

    def stop(self) -> None:
        import neuroglancer

        self.server.stop()
        neuroglancer.stop()


def check_port(port: int) -> None:
    """UsageError when `port` (not 0) cannot be bound on 127.0.0.1."""
    if port == 0:
        return
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        try:
            probe.bind((_HOST, port))
        except OSError as exc:
            raise UsageError(
                f"port {port} on {_HOST} is in use ({exc.strerror}): give another with "
                "--port, or leave --port out for a free one"
            ) from None


def start_viewer(plan: ViewPlan, port: int = 0) -> ViewerSession:
    """Serve the plan's arrays and open a neuroglancer viewer of them on `port` (0: free)."""
    import neuroglancer

    check_port(port)
    server = ZarrServer(_HOST)
    try:
        neuroglancer.set_server_bind_address(_HOST, port)
        viewer = neuroglancer.Viewer()
        with viewer.txn() as state:
            apply_plan(state, plan, server)
        url = viewer.get_viewer_url()
    except OSError as exc:
        server.stop()
        raise UsageError(f"cannot start the viewer on {_HOST}:{port}: {exc.strerror}") from None
    except BaseException:
        server.stop()
        raise
    return ViewerSession(url, viewer, server)


def apply_plan(state: Any, plan: ViewPlan, server: ZarrServer) -> None:
    """Set a neuroglancer ViewerState to show `plan` (layers, axes, position, layout)."""
    import neuroglancer

    dims = plan.dims
    axes = _AXES[-dims:]
    state.dimensions = neuroglancer.CoordinateSpace(
        names=list(reversed(axes)), units="nm", scales=list(reversed(plan.voxel_size))
    )
    state.position = list(reversed(voxel_position(plan.centre, plan.voxel_size)))
    for index, layer in enumerate(plan.layers):
        source = layer_source(layer, server.add(str(index), layer.path, ome_entry(layer)))
        state.layers.append(name=layer.name, layer=make_layer(layer, source), visible=layer.visible)
    state.layout = "4panel" if dims == 3 else "xy"
    state.show_default_annotations = False
    state.cross_section_scale = _zoom(plan)


def voxel_position(centre_nm: Sequence[float], voxel_size: Sequence[int]) -> list[float]:
    """A point in nm as the viewer's coordinates (voxels of `voxel_size`), z, y, x.

    OME-NGFF puts a voxel's centre at its coordinate and neuroglancer its lower corner,
    so neuroglancer draws every OME source half a voxel lower than funlib's ROI: the
    position moves with it.
    """
    return [c / v - 0.5 for c, v in zip(centre_nm, voxel_size)]


def ome_entry(layer: Layer) -> dict[str, Any]:
    """The layer's OME-NGFF entry: from its container, else made from its attributes."""
    found = ome.entry(layer.container, layer.array)
    if found is not None:
        return found
    ndim = len(layer.shape) + (1 if layer.channels else 0)
    return ome.multiscale(layer.array, ndim, layer.voxel_size, layer.offset)


def layer_source(layer: Layer, url: str) -> Any:
    """A zarr:// source; a channel axis becomes neuroglancer's channel dimension `c^`."""
    import neuroglancer

    if not layer.channels:
        return neuroglancer.LayerDataSource(url=f"zarr://{url}")
    dims = len(layer.voxel_size)
    output = neuroglancer.CoordinateSpace(
        names=["c^", *_AXES[-dims:]],
        units=["", *["nm"] * dims],
        scales=[1, *layer.voxel_size],
    )
    return neuroglancer.LayerDataSource(
        url=f"zarr://{url}",
        transform=neuroglancer.CoordinateSpaceTransform(output_dimensions=output),
    )


def make_layer(layer: Layer, source: Any) -> Any:
    import neuroglancer

    if layer.kind == "segmentation":
        return neuroglancer.SegmentationLayer(source=source)
    options: dict[str, Any] = {"opacity": _opacity(layer)}
    code = shader(layer)
    if code is not None:
        options["shader"] = code
    return neuroglancer.ImageLayer(source=source, **options)


def shader(layer: Layer) -> str | None:
    """LSDs: three channels as RGB, chosen by sliders. Affinities: the first three as RGB.
    Float images: grey over their value range. Others: neuroglancer's default."""
    channels = layer.channels
    if layer.role in ("lsds", "gt_lsds") and channels:
        last = channels - 1
        return _LSDS_SHADER.format(last=last, g=min(1, last), b=min(2, last))
    if layer.role in ("affs", "gt_affs") and channels:
        rgb = [f"toNormalized(getDataValue({c}))" if c < channels else "0.0" for c in range(3)]
        return _AFFS_SHADER.format(r=rgb[0], g=rgb[1], b=rgb[2])
    if layer.value_range is not None and not channels:
        low, high = layer.value_range
        return _GREY_SHADER.format(low=low, high=high)
    return None


def _opacity(layer: Layer) -> float:
    return 1.0 if layer.role == "raw" else 0.6


def _zoom(plan: ViewPlan) -> float:
    """Cross-section zoom (viewer voxels per screen pixel) that fits the in-plane extent
    of the first layer into about 400 pixels, a panel of a 4-panel layout."""
    first = plan.layers[0]
    extent = max(s * v for s, v in zip(first.shape[-2:], first.voxel_size[-2:]))
    return max(extent / min(plan.voxel_size[-2:]) / 400, 0.05)


def serve_forever(session: ViewerSession, stop: threading.Event | None = None) -> bool:
    """Block until `stop` is set or Ctrl-C (KeyboardInterrupt), then stop the viewer.

    False when the servers did not stop within seconds (seen once on a loaded machine:
    the process then has to end without waiting for their threads)."""
    stop = stop or threading.Event()
    try:
        while not stop.wait(0.5):
            pass
    except KeyboardInterrupt:
        pass
    return stop_within(session, 10.0)


def stop_within(session: ViewerSession, seconds: float) -> bool:
    """session.stop() in a thread of its own, waited for at most `seconds`."""
    stopper = threading.Thread(target=session.stop, name="viewer-stop", daemon=True)
    stopper.start()
    stopper.join(seconds)
    return not stopper.is_alive()
