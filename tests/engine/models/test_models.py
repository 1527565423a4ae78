"""The UNet agrees with engine.geometry; the LSD models build, run and train; losses."""

from __future__ import annotations

import itertools
import math
import random
import subprocess
import sys
from collections.abc import Sequence
from types import SimpleNamespace
from typing import Any

import pytest
import torch

from engine.errors import EngineError, InputError
from engine.geometry import (
    GeometryError,
    Shape,
    UNetGeometry,
    input_shape_for_output,
    largest_input_within,
    stage2_input_shape,
    two_stage_input_shape_for_output,
    two_stage_output_shape,
)
from engine.models import MODEL_TYPES, AutoContextModel, UNet, build_model
from engine.models.losses import AffinityLoss, LsdLoss, MtlsdLoss, loss_for, weighted_mse
from engine.models.registry import MODEL_TYPES as REGISTRY
from engine.models.registry import model_type_spec

# --- helpers -----------------------------------------------------------------------------


def _random_layout(rng: random.Random, dims: int) -> dict[str, Any]:
    """A small random UNet layout whose total downsampling stays at most 9 per axis."""
    num_factors = rng.randint(0, 2)
    factors: list[list[int]] = []
    for _ in range(num_factors):
        factors.append([rng.choice([1, 2, 3]) for _ in range(dims)])
    for axis in range(dims):
        while math.prod(f[axis] for f in factors) > 9:
            factors[rng.randrange(num_factors)][axis] = 1

    def level() -> list[list[int]]:
        return [[rng.choice([1, 2, 3]) for _ in range(dims)] for _ in range(rng.randint(1, 2))]

    return {
        "downsample_factors": factors,
        "kernel_size_down": [level() for _ in range(num_factors + 1)],
        "kernel_size_up": [level() for _ in range(num_factors)],
    }


def _unet(layout: dict[str, Any], crop_to_factor: bool, **kwargs: Any) -> UNet:
    options: dict[str, Any] = {"in_channels": 1, "num_fmaps": 2, "fmap_inc_factor": 2}
    options.update(kwargs)
    return UNet(**options, **layout, crop_to_factor=crop_to_factor)


def _geometry(layout: dict[str, Any], crop_to_factor: bool) -> UNetGeometry:
    return UNetGeometry.create(**layout, crop_to_factor=crop_to_factor)


def _total_factor(layout: dict[str, Any], dims: int) -> Shape:
    return tuple(math.prod(f[d] for f in layout["downsample_factors"]) for d in range(dims))


def _config(layout: dict[str, Any], input_shape: Sequence[int], **kwargs: Any) -> SimpleNamespace:
    options: dict[str, Any] = {
        "num_fmaps": 3,
        "fmap_inc_factor": 2,
        "constant_upsample": True,
        "crop_to_factor": True,
        "input_shape": list(input_shape),
    }
    options.update(kwargs)
    return SimpleNamespace(**layout, **options)


TINY_3D = {
    "downsample_factors": [[1, 2, 2], [2, 2, 2]],
    "kernel_size_down": [[[1, 3, 3]] * 2, [[3, 3, 3]] * 2, [[3, 3, 3]] * 2],
    "kernel_size_up": [[[3, 3, 3]] * 2, [[3, 3, 3]] * 2],
}
TINY_2D = {
    "downsample_factors": [[2, 2], [2, 2]],
    "kernel_size_down": [[[3, 3]] * 2] * 3,
    "kernel_size_up": [[[3, 3]] * 2] * 2,
}


# --- (a) the UNet's shapes equal the geometry's ------------------------------------------


@pytest.mark.parametrize("crop_to_factor", [True, False])
@pytest.mark.parametrize("dims", [2, 3])
@pytest.mark.parametrize("seed", range(5))
def test_unet_output_shape_equals_geometry(seed: int, dims: int, crop_to_factor: bool) -> None:
    rng = random.Random(seed * 10 + dims + (100 if crop_to_factor else 0))
    layout = _random_layout(rng, dims)
    geometry = _geometry(layout, crop_to_factor)
    unet = _unet(layout, crop_to_factor, constant_upsample=bool(seed % 2))
    valid = input_shape_for_output(geometry, [rng.randint(1, 3) for _ in range(dims)])
    # The smallest valid input, a larger valid one, and (likely invalid) nearby shapes:
    # the network must fail exactly where the arithmetic does.
    total = _total_factor(layout, dims)
    candidates = [valid, tuple(v + f for v, f in zip(valid, total, strict=True))]
    candidates += [tuple(v + rng.randint(-2, 2) for v in valid) for _ in range(3)]
    for shape in candidates:
        if min(shape) < 1:
            continue
        try:
            expected: Shape | None = geometry.output_shape(shape)
        except GeometryError:
            expected = None
        with torch.no_grad():
            if expected is None:
                with pytest.raises(InputError):
                    unet(torch.zeros(1, 1, *shape))
                with pytest.raises(InputError):
                    unet.output_shape(shape)
            else:
                out = unet(torch.zeros(1, 1, *shape))
                assert tuple(out.shape) == (1, 2, *expected), (layout, shape)
                assert unet.output_shape(shape) == expected
                if crop_to_factor:
                    # What makes blockwise prediction seamless (see section d).
                    assert all(o % f == 0 for o, f in zip(expected, total, strict=True))


@pytest.mark.parametrize("crop_to_factor", [True, False])
@pytest.mark.parametrize("seed", range(4))
def test_input_shape_for_output_is_smallest(seed: int, crop_to_factor: bool) -> None:
    rng = random.Random(seed)
    dims = 2 + seed % 2
    layout = _random_layout(rng, dims)
    geometry = _geometry(layout, crop_to_factor)
    wanted = [rng.randint(1, 12) for _ in range(dims)]
    found = input_shape_for_output(geometry, wanted)
    assert all(o >= w for o, w in zip(geometry.output_shape(found), wanted, strict=True))
    # Axes are independent: shrinking any one axis must fail or give too little output.
    for axis in range(dims):
        for size in range(1, found[axis]):
            shape = list(found)
            shape[axis] = size
            try:
                assert geometry.output_shape(shape)[axis] < wanted[axis]
            except GeometryError:
                pass
    # largest_input_within is the other way round: valid, and nothing larger fits.
    limit = [f + rng.randint(0, 7) for f in found]
    largest = largest_input_within(geometry, limit)
    assert all(s <= m for s, m in zip(largest, limit, strict=True))
    geometry.output_shape(largest)
    for axis in range(dims):
        for size in range(largest[axis] + 1, limit[axis] + 1):
            shape = list(largest)
            shape[axis] = size
            with pytest.raises(GeometryError):
                geometry.output_shape(shape)


def test_inverse_geometry_on_the_presets() -> None:
    cremi = UNetGeometry.create(
        [(1, 2, 2), (2, 2, 2), (3, 3, 3)],
        [[(1, 3, 3)] * 2] + [[(3, 3, 3)] * 2] * 3,
        [[(3, 3, 3)] * 2] * 3,
    )
    assert input_shape_for_output(cremi, (72, 144, 144)) == (132, 268, 268)
    zebrafinch = UNetGeometry.create(
        [(1, 3, 3), (1, 3, 3), (3, 3, 3)],
        [[(3, 3, 3)] * 2] * 4,
        [[(3, 3, 3)] * 2] * 3,
        crop_to_factor=False,
    )
    assert input_shape_for_output(zebrafinch, (48, 56, 56)) == (84, 268, 268)
    assert largest_input_within(zebrafinch, (86, 280, 280)) == (84, 268, 268)
    with pytest.raises(GeometryError, match="too small"):
        largest_input_within(zebrafinch, (20, 20, 20))
    # Two stages: the smallest input for an output gives at least that output; stage 1's
    # output (a multiple of 12 in y and x) is cropped to the smallest stage-2 input.
    total_in = two_stage_input_shape_for_output(cremi, cremi, (72, 144, 144))
    assert cremi.output_shape(total_in) == (132, 276, 276)
    assert stage2_input_shape(cremi, cremi, total_in) == (132, 268, 268)
    assert two_stage_output_shape(cremi, cremi, total_in) == (72, 144, 144)
    for size in range(total_in[1] - 30, total_in[1]):
        try:
            assert two_stage_output_shape(cremi, cremi, (192, size, 400))[1] < 144
        except GeometryError:
            pass
    assert two_stage_output_shape(cremi, cremi, (132, 268, 268)) == (12, 12, 12)


# --- (b) full-size presets, on the meta device (shapes only, no compute) -----------------

PRESETS = {
    "cremi": (
        {
            "downsample_factors": [[1, 2, 2], [2, 2, 2], [3, 3, 3]],
            "kernel_size_down": [[[1, 3, 3]] * 2] + [[[3, 3, 3]] * 2] * 3,
            "kernel_size_up": [[[3, 3, 3]] * 2] * 3,
        },
        True,
        (132, 268, 268),
        (72, 144, 144),
    ),
    "fib25": (
        {
            "downsample_factors": [[2, 2, 2], [2, 2, 2], [3, 3, 3]],
            "kernel_size_down": [[[3, 3, 3]] * 2] * 4,
            "kernel_size_up": [[[3, 3, 3]] * 2] * 3,
        },
        True,
        (196, 196, 196),
        (72, 72, 72),
    ),
    "zebrafinch": (
        {
            "downsample_factors": [[1, 3, 3], [1, 3, 3], [3, 3, 3]],
            "kernel_size_down": [[[3, 3, 3]] * 2] * 4,
            "kernel_size_up": [[[3, 3, 3]] * 2] * 3,
        },
        False,
        (84, 268, 268),
        (48, 56, 56),
    ),
}


@pytest.mark.parametrize("constant_upsample", [True, False])
@pytest.mark.parametrize("name", sorted(PRESETS))
def test_preset_geometries_on_meta_device(name: str, constant_upsample: bool) -> None:
    layout, crop, input_shape, output_shape = PRESETS[name]
    assert _geometry(layout, crop).output_shape(input_shape) == output_shape
    with torch.device("meta"):
        unet = UNet(
            1,
            12,
            5,
            **layout,
            constant_upsample=constant_upsample,
            crop_to_factor=crop,
            num_heads=2,
        )
        lsds, affs = unet(torch.empty(2, 1, *input_shape))
    assert lsds.device.type == "meta"
    assert tuple(lsds.shape) == tuple(affs.shape) == (2, 12, *output_shape)


def test_zebrafinch_input_does_not_fit_with_crop_to_factor() -> None:
    layout, _, input_shape, _ = PRESETS["zebrafinch"]
    with torch.device("meta"):
        unet = UNet(1, 12, 5, **layout, crop_to_factor=True)
        with pytest.raises(InputError):
            unet(torch.empty(1, 1, *input_shape))
    with pytest.raises(InputError, match="valid input shapes nearby"):
        unet.output_shape(input_shape)


@pytest.mark.parametrize("model_type", MODEL_TYPES)
def test_preset_models_build_on_meta_device(model_type: str) -> None:
    layout, _, input_shape, output_shape = PRESETS["cremi"]
    config = _config(layout, input_shape, num_fmaps=12, fmap_inc_factor=5)
    with torch.device("meta"):
        model = build_model(model_type, config, dims=3, num_affinities=3)
        outputs = model(torch.empty(1, 1, *input_shape))
    outputs = outputs if isinstance(outputs, tuple) else (outputs,)
    shapes = model.output_shapes(input_shape)
    assert list(shapes) == list(model.output_names)
    for name, out in zip(model.output_names, outputs, strict=True):
        assert tuple(out.shape[2:]) == shapes[name]
    if not model_type_spec(model_type).auto_context:
        assert model.output_shape(input_shape) == output_shape


# --- (c) every model type builds, runs forward and backward -------------------------------


@pytest.mark.parametrize("dims", [2, 3])
@pytest.mark.parametrize("model_type", MODEL_TYPES)
def test_model_types_forward_backward(model_type: str, dims: int) -> None:
    torch.manual_seed(0)
    layout = TINY_3D if dims == 3 else TINY_2D
    geometry = _geometry(layout, True)
    want = (2,) * dims
    if model_type_spec(model_type).auto_context:
        input_shape = two_stage_input_shape_for_output(geometry, geometry, want)
    else:
        input_shape = input_shape_for_output(geometry, want)
    num_affs = 3 if dims == 3 else 2
    model = build_model(model_type, _config(layout, input_shape), dims, num_affs)
    raw = torch.rand(2, 1, *input_shape)
    outputs = model(raw)
    outputs = outputs if isinstance(outputs, tuple) else (outputs,)
    shapes = model.output_shapes(input_shape)
    channels = {"lsds": 10 if dims == 3 else 6, "affs": num_affs}
    assert len(outputs) == len(model.output_names)
    for name, out in zip(model.output_names, outputs, strict=True):
        assert tuple(out.shape) == (2, channels[name], *shapes[name])
        assert float(out.detach().min()) >= 0.0 and float(out.detach().max()) <= 1.0
    assert min(model.output_shape(input_shape)) >= 2

    loss_fn = loss_for(model_type)
    trained = dict(zip(model.output_names, outputs, strict=True))
    arguments: list[torch.Tensor] = []
    for name in ("lsds", "affs"):
        if f"pred_{name}" in loss_fn.input_names:
            arguments += [
                trained[name],
                torch.rand_like(trained[name]),
                torch.ones_like(trained[name]),
            ]
    loss = loss_fn(*arguments)
    loss.backward()
    assert torch.isfinite(loss)
    for parameter_name, parameter in model.named_parameters():
        assert parameter.grad is not None, parameter_name


@pytest.mark.parametrize("name", list(REGISTRY))
def test_each_registered_type_is_what_it_declares(name: str) -> None:
    """The registry's declarations agree with what gets built: the network's outputs,
    the loss's inputs, the stages, the predicted arrays."""
    spec = REGISTRY[name]
    layout = TINY_3D
    geometry = _geometry(layout, True)
    want = (2, 2, 2)
    if spec.auto_context:
        input_shape = two_stage_input_shape_for_output(geometry, geometry, want)
    else:
        input_shape = input_shape_for_output(geometry, want)
    model = build_model(name, _config(layout, input_shape), 3, 3)
    assert model.model_type == name
    assert model.output_names == spec.outputs
    assert list(model.output_shapes(input_shape)) == list(spec.outputs)
    assert spec.predicts == tuple(f"pred_{output}" for output in spec.outputs)
    assert set(spec.trains) <= set(spec.outputs)
    expected = tuple(n for o in spec.trains for n in (f"pred_{o}", f"gt_{o}", f"{o}_weights"))
    assert loss_for(name).input_names == expected
    if spec.auto_context:
        assert isinstance(model, AutoContextModel)
        assert spec.stage1 is not None and spec.stage2 is not None
        stage1, stage2 = model_type_spec(spec.stage1), model_type_spec(spec.stage2)
        assert not stage1.auto_context and not stage2.auto_context
        assert stage1.outputs + stage2.outputs == spec.outputs
        assert model.stage1.output_names == stage1.outputs
        assert model.stage2.output_names == stage2.outputs
        assert spec.trains == stage2.trains
        assert model.include_raw == spec.stage2_raw
    else:
        assert spec.stage2 is None and not spec.stage2_raw


def test_registry_is_light_and_names_unknown_types() -> None:
    code = (
        "import sys\n"
        "import engine.project.config\n"
        "from engine.models.registry import MODEL_TYPES\n"
        "print(sorted({m.split('.')[0] for m in sys.modules} & {'torch', 'gunpowder'}))\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "[]"
    with pytest.raises(InputError, match="allowed: " + ", ".join(REGISTRY)):
        model_type_spec("mtlsd")  # names are exact: upper case, as in project.toml


def test_auto_context_stage1_frozen_for_stage2_training() -> None:
    layout = TINY_2D
    geometry = _geometry(layout, True)
    input_shape = two_stage_input_shape_for_output(geometry, geometry, (2, 2))
    model = build_model("ACRLSD", _config(layout, input_shape), 2, 2)
    assert isinstance(model, AutoContextModel)
    assert model.stage2.in_channels == 6 + 1
    model.freeze_stage1()
    model.train()
    assert not model.stage1.training and model.stage2.training
    lsds, affs = model(torch.rand(1, 1, *input_shape))
    assert not lsds.requires_grad
    AffinityLoss()(affs, torch.rand_like(affs), torch.ones_like(affs)).backward()
    assert all(p.grad is None for p in model.stage1.parameters())
    assert all(p.grad is not None for p in model.stage2.parameters())
    assert set(map(id, model.trainable_parameters())) == set(map(id, model.stage2.parameters()))
    model.freeze_stage1(False)
    assert model.stage1.training
    assert all(p.requires_grad for p in model.stage1.parameters())


def test_build_model_rejects_bad_input() -> None:
    config = _config(TINY_3D, (20, 44, 44))
    with pytest.raises(InputError, match="allowed: MTLSD, LSD, AFF, ACLSD, ACRLSD"):
        build_model("UNET", config, 3, 3)
    with pytest.raises(InputError, match="3-value kernels"):
        build_model("LSD", _config(TINY_2D, (40, 40)), 3, 3)
    with pytest.raises(InputError, match="input_shape"):
        build_model("LSD", _config(TINY_3D, (40, 40)), 3, 3)
    with pytest.raises(InputError, match="does not fit"):
        build_model("LSD", _config(TINY_3D, (21, 45, 45)), 3, 3)
    with pytest.raises(InputError, match="levels"):
        build_model("LSD", _config({**TINY_3D, "kernel_size_up": []}, (20, 44, 44)), 3, 3)
    with pytest.raises(InputError, match="2 or 3"):
        build_model("LSD", config, 4, 3)
    smallest = input_shape_for_output(_geometry(TINY_3D, True), (1, 1, 1))
    build_model("LSD", _config(TINY_3D, smallest), 3, 3)
    with pytest.raises(InputError, match="too small for stage 2"):
        build_model("ACLSD", _config(TINY_3D, smallest), 3, 3)


# --- (d) translation equivariance: blockwise prediction is seamless -----------------------


def _predictor(model: torch.nn.Module, output_index: int | None) -> Any:
    model = model.double().eval()

    def predict(x: torch.Tensor) -> torch.Tensor:
        with torch.no_grad():
            out = model(x)
        return out if output_index is None else out[output_index]

    return predict


def _check_tiling(model: torch.nn.Module, input_shape: Shape, output_index: int | None) -> None:
    """Predicting one large input equals stitching 2^dims adjacent blocks' predictions.

    The blocks' inputs overlap by the context and their outputs tile the large output
    exactly, as in blockwise prediction; the blocks are shifted by the output shape.
    """
    torch.manual_seed(1)
    predict = _predictor(model, output_index)
    dims = len(input_shape)
    block = predict(torch.zeros(1, 1, *input_shape, dtype=torch.float64)).shape[2:]
    big_shape = tuple(s + o for s, o in zip(input_shape, block, strict=True))
    raw = torch.rand(1, 1, *big_shape, dtype=torch.float64)
    big = predict(raw)
    assert tuple(big.shape[2:]) == tuple(2 * o for o in block)
    stitched = torch.full_like(big, -1.0)
    for corner in itertools.product((0, 1), repeat=dims):
        offset = [c * o for c, o in zip(corner, block, strict=True)]
        inputs = tuple(slice(o, o + s) for o, s in zip(offset, input_shape, strict=True))
        outputs = tuple(slice(o, o + s) for o, s in zip(offset, block, strict=True))
        stitched[(..., *outputs)] = predict(raw[(..., *inputs)])
    torch.testing.assert_close(stitched, big, rtol=0, atol=1e-10)


@pytest.mark.parametrize("constant_upsample", [True, False])
@pytest.mark.parametrize("dims", [2, 3])
def test_unet_blockwise_prediction_is_seamless(dims: int, constant_upsample: bool) -> None:
    layout = TINY_3D if dims == 3 else TINY_2D
    geometry = _geometry(layout, True)
    input_shape = input_shape_for_output(geometry, (1,) * dims)
    # crop_to_factor makes every output a multiple of the total downsample factor, so
    # adjacent blocks are shifted by whole coarse-grid cells.
    total = _total_factor(layout, dims)
    assert all(o % f == 0 for o, f in zip(geometry.output_shape(input_shape), total, strict=True))
    _check_tiling(_unet(layout, True, constant_upsample=constant_upsample), input_shape, None)


def test_auto_context_blockwise_prediction_is_seamless() -> None:
    geometry = _geometry(TINY_2D, True)
    input_shape = two_stage_input_shape_for_output(geometry, geometry, (1, 1))
    model = build_model("ACRLSD", _config(TINY_2D, input_shape), 2, 2)
    _check_tiling(model, input_shape, 1)


def test_without_crop_to_factor_blocks_do_not_tile() -> None:
    # The zebrafinch-like case that crop_to_factor exists for: an output of 5 per axis
    # is no multiple of the factor 3, so a block shifted by one output block sees another
    # coarse grid and its prediction differs from the large input's there.
    layout = {
        "downsample_factors": [[3, 3]],
        "kernel_size_down": [[[3, 3]] * 2] * 2,
        "kernel_size_up": [[[3, 3]] * 2],
    }
    geometry = _geometry(layout, False)
    assert geometry.output_shape((25, 25)) == (5, 5)
    assert geometry.output_shape((31, 31)) == (11, 11)
    torch.manual_seed(3)
    predict = _predictor(_unet(layout, False, num_fmaps=6), None)
    raw = torch.rand(1, 1, 31, 31, dtype=torch.float64)
    big = predict(raw)
    torch.testing.assert_close(big[..., 0:5, 0:5], predict(raw[..., 0:25, 0:25]))
    torch.testing.assert_close(big[..., 6:11, 6:11], predict(raw[..., 6:31, 6:31]))
    assert not torch.allclose(big[..., 5:10, 5:10], predict(raw[..., 5:30, 5:30]))
    # With crop_to_factor the same layout gives outputs in whole factors (25 → 3).
    assert _geometry(layout, True).output_shape((25, 25)) == (3, 3)


# --- (e) losses ------------------------------------------------------------------------


def test_weighted_mse_value_and_masking() -> None:
    torch.manual_seed(2)
    pred = torch.rand(1, 3, 4, 5, requires_grad=True)
    target = torch.rand(1, 3, 4, 5)
    weights = torch.zeros(1, 3, 4, 5)
    weights[..., :2, :] = 2.0
    loss = weighted_mse(pred, target, weights)
    expected = (2.0 * (pred - target) ** 2)[..., :2, :].mean()
    torch.testing.assert_close(loss, expected)
    # Voxels of weight 0 are ignored: changing the prediction there changes nothing.
    changed = pred.detach().clone()
    changed[..., 2:, :] = 1.0 - changed[..., 2:, :]
    torch.testing.assert_close(weighted_mse(changed, target, weights), loss.detach())
    # The gradient reaches the weighted voxels only.
    loss.backward()
    assert pred.grad is not None
    assert torch.all(pred.grad[..., 2:, :] == 0)
    assert torch.all(pred.grad[..., :2, :] != 0)


def test_weighted_mse_zero_weights_and_broadcast() -> None:
    pred = torch.rand(2, 3, 4, requires_grad=True)
    target = torch.rand(2, 3, 4)
    loss = weighted_mse(pred, target, torch.zeros(2, 3, 4))
    assert float(loss.detach()) == 0.0
    loss.backward()
    assert pred.grad is not None and torch.all(pred.grad == 0)
    # A one-channel mask broadcast over channels counts every channel's voxels.
    mask = torch.tensor([1.0, 0.0])[:, None, None]
    full = mask.expand(2, 3, 4)
    torch.testing.assert_close(weighted_mse(pred, target, mask), weighted_mse(pred, target, full))
    with pytest.raises(EngineError):
        weighted_mse(pred, target[:1], full)


def test_loss_for_each_model_type() -> None:
    assert isinstance(loss_for("MTLSD"), MtlsdLoss)
    assert isinstance(loss_for("LSD"), LsdLoss)
    for model_type in ("AFF", "ACLSD", "ACRLSD"):
        assert isinstance(loss_for(model_type), AffinityLoss)
    with pytest.raises(InputError, match="allowed"):
        loss_for("lsd")
    lsds, gt_lsds = torch.rand(1, 10, 3, 3, 3), torch.rand(1, 10, 3, 3, 3)
    affs, gt_affs = torch.rand(1, 3, 3, 3, 3), torch.rand(1, 3, 3, 3, 3)
    ones_l, ones_a = torch.ones_like(lsds), torch.ones_like(affs)
    total = loss_for("MTLSD")(lsds, gt_lsds, ones_l, affs, gt_affs, ones_a)
    torch.testing.assert_close(
        total, LsdLoss()(lsds, gt_lsds, ones_l) + AffinityLoss()(affs, gt_affs, ones_a)
    )
    assert MtlsdLoss.input_names == (
        "pred_lsds",
        "gt_lsds",
        "lsds_weights",
        "pred_affs",
        "gt_affs",
        "affs_weights",
    )
