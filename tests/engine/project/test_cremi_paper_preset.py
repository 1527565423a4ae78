"""The `cremi-paper` preset: the LSD paper's CREMI net (funkelab/lsd_experiments,
cremi/02_train/setup61_p: mala UNet 12 fmaps x5, downsampling (1,3,3),(1,3,3),(3,3,3),
input 84x268x268, DefectAugment 0.03/0.01/0.03 with contrast 0.5)."""

from __future__ import annotations

import pytest
import torch

from engine.models import MODEL_TYPES, build_model
from engine.models.registry import model_type_spec
from engine.project import config as cfg


def test_geometry_and_augmentations_of_the_paper() -> None:
    config = cfg.from_preset("cremi-paper")
    model = config.model
    assert config.data.voxel_size == [40, 4, 4] and config.anisotropic()
    assert model.num_fmaps == 12 and model.fmap_inc_factor == 5
    assert model.downsample_factors == [[1, 3, 3], [1, 3, 3], [3, 3, 3]]
    assert all(k == [3, 3, 3] for level in model.kernel_size_down for k in level)
    assert all(k == [3, 3, 3] for level in model.kernel_size_up for k in level)
    assert not model.crop_to_factor
    assert model.input_shape == [84, 268, 268] and model.output_shape == [48, 56, 56]
    assert model.lsd_sigma == 80
    aug = config.train.augment
    assert (aug.prob_missing, aug.prob_low_contrast, aug.prob_artifact) == (0.03, 0.01, 0.03)
    assert aug.prob_deform == 0 and aug.contrast_scale == 0.5
    assert (aug.prob_slip, aug.prob_shift, aug.max_misalign) == (0.05, 0.05, 10)
    assert config.preprocess.min_masked == 0.5


def test_defects_off_where_the_data_is_isotropic() -> None:
    for name in cfg.preset_names():
        config = cfg.from_preset(name)
        aug = config.train.augment
        if not config.anisotropic():
            assert aug.prob_missing == aug.prob_low_contrast == aug.prob_artifact == 0, name


# One UNet: the auto-context models chain two and need a larger input (config says which).
@pytest.mark.parametrize(
    "model_type", [t for t in MODEL_TYPES if not model_type_spec(t).auto_context]
)
def test_builds_and_runs_on_the_meta_device(model_type: str) -> None:
    config = cfg.from_preset("cremi-paper", {"train": {"model_type": model_type}})
    with torch.device("meta"):
        model = build_model(model_type, config.model, 3, 3)
        shapes = model.output_shapes(config.model.input_shape)
        out = model(torch.empty(1, 1, *config.model.input_shape))
    outputs = out if isinstance(out, tuple) else (out,)
    names = model.output_names
    for name, tensor in zip(names, outputs):
        assert tuple(tensor.shape[-3:]) == tuple(shapes[name])
