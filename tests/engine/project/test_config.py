"""engine.project.config: presets, validation rules, TOML round trip."""

from __future__ import annotations

from pathlib import Path

import pytest

from engine.errors import InputError
from engine.models.registry import MODEL_TYPES
from engine.project import config as cfg


@pytest.mark.parametrize(
    ("preset", "voxel", "input_shape", "output_shape", "sigma"),
    [
        ("cremi", [40, 4, 4], [132, 268, 268], [72, 144, 144], 80),
        ("snemi", [30, 6, 6], [132, 268, 268], [72, 144, 144], 80),
        ("zebrafinch", [20, 9, 9], [84, 268, 268], [48, 56, 56], 120),
        ("fib25", [8, 8, 8], [196, 196, 196], [72, 72, 72], 80),
    ],
)
def test_paper_presets(
    preset: str, voxel: list[int], input_shape: list[int], output_shape: list[int], sigma: float
) -> None:
    config = cfg.from_preset(preset)
    assert config.data.voxel_size == voxel
    assert config.model.input_shape == input_shape
    assert config.model.output_shape == output_shape
    assert config.model.lsd_sigma == sigma


def test_cremi_geometry_details() -> None:
    model = cfg.from_preset("cremi").model
    assert model.downsample_factors == [[1, 2, 2], [2, 2, 2], [3, 3, 3]]
    assert model.kernel_size_down[0] == [[1, 3, 3], [1, 3, 3]]
    assert model.num_fmaps == 12 and model.fmap_inc_factor == 5
    assert cfg.from_preset("cremi").anisotropic() and not cfg.from_preset("fib25").anisotropic()


def test_every_preset_validates_and_round_trips(tmp_path: Path) -> None:
    assert {"cremi", "snemi", "zebrafinch", "fib25", "tiny", "tiny2d"} <= set(cfg.preset_names())
    for name in cfg.preset_names():
        config = cfg.from_preset(name)
        path = tmp_path / f"{name}.toml"
        cfg.save(config, path)
        assert cfg.load(path) == config


def test_tiny_preset_is_small_enough_for_a_cpu() -> None:
    config = cfg.from_preset("tiny")
    voxels = 1
    for s in config.model.input_shape:
        voxels *= s
    assert voxels < 100_000 and config.model.num_fmaps <= 8


@pytest.mark.parametrize(
    ("overrides", "match"),
    [
        ({"data": {"voxel_size": [8, 8]}}, "data.voxel_size needs 3 values"),
        ({"data": {"voxel_size": [8, -1, 8]}}, "positive"),
        ({"data": {"dims": 4}}, "data.dims"),
        ({"model": {"input_shape": [100, 100, 100]}}, "valid input shapes nearby"),
        ({"model": {"output_shape": [70, 70, 70]}}, "does not match input_shape"),
        ({"model": {"kernel_size_up": [[[3, 3, 3]]]}}, "kernel_size_up needs 3 levels"),
        ({"segment": {"thresholds": [0.0, 0.5]}}, "greater than 0"),
        ({"segment": {"merge_function": "median"}}, "segment.merge_function"),
        ({"train": {"neighborhood": [[0, 0, 0]]}}, "all zeros"),
        ({"train": {"neighborhood": [[-1, 0]]}}, "neighborhood offsets needs 3 values"),
        ({"train": {"adam_betas": [0.9, 1.5]}}, "train.adam_betas"),
        ({"train": {"augment": {"intensity_scale": [1.2, 0.8]}}}, "(low, high)"),
        ({"predict": {"block_shape": [100, 100, 100]}}, "multiple of the model output"),
        ({"predict": {"executor": "pbs"}}, "predict.executor"),
        ({"train": {"model_type": "ACLSD"}}, "chains two unets"),
        ({"bogus": 1}, "bogus: unknown key"),
    ],
)
def test_invalid_configs_say_what_is_wrong(overrides: dict, match: str) -> None:  # type: ignore[type-arg]
    with pytest.raises(InputError) as info:
        cfg.from_preset("fib25", overrides)
    assert match.lower() in str(info.value).lower()
    assert "\n" not in str(info.value)


def test_model_type_takes_the_registered_names_only() -> None:
    names = list(MODEL_TYPES)
    for name in names:
        assert cfg.from_preset("tiny", {"train": {"model_type": name}}).train.model_type == name
    listed = " or ".join([", ".join(f"'{n}'" for n in names[:-1]), f"'{names[-1]}'"])
    for bad in ("UNET", "mtlsd"):  # names are exact: upper case, as the registry spells them
        with pytest.raises(InputError, match=r"train\.model_type") as info:
            cfg.from_preset("tiny", {"train": {"model_type": bad}})
        assert f"Input should be {listed}" in str(info.value)
    schema = cfg.ProjectConfig.model_json_schema()["$defs"]["ModelType"]
    assert schema["enum"] == names
    assert cfg.TrainConfig().model_type == "MTLSD"
    assert cfg.TrainConfig.model_fields["model_type"].description == (
        f"{', '.join(names[:-1])} or {names[-1]} (see docs)."
    )


def test_dotted_keys() -> None:
    config = cfg.from_preset("tiny")
    assert cfg.get_value(config, "MODEL.Input_Shape") == [44, 44, 44]
    changed = cfg.with_value(config, "model.input_shape", [52, 52, 52])
    assert changed.model.output_shape == [36, 36, 36]
    assert config.model.input_shape == [44, 44, 44]  # the original is untouched
    keys = {k for k, _, _ in cfg.iter_keys(config)}
    assert {"train.augment.prob_slip", "segment.merge_function", "system.gpus"} <= keys
    assert all(doc for k, _, doc in cfg.iter_keys(config))  # every field documented
    assert cfg.parse_value("[1, 2]") == [1, 2] and cfg.parse_value("mtlsd") == "mtlsd"


def test_derived_context_and_block() -> None:
    config = cfg.from_preset("cremi")
    assert config.context() == [30, 62, 62]
    assert config.block_shape() == [72, 144, 144]
    assert cfg.from_preset("tiny2d").num_lsds() == 6


def test_segmentation_blocks_span_two_microns_unless_set() -> None:
    # cremi (40x4x4 nm): 72 sections are 2.9 um already; 144 xy voxels repeat 4x (2.3 um).
    assert cfg.from_preset("cremi").segment_block_shape() == [72, 576, 576]
    tiny = cfg.from_preset("tiny")  # 8 nm, output 28: 9 blocks span 2016 nm
    assert tiny.segment_block_shape() == [252, 252, 252]
    explicit = cfg.with_value(tiny, "segment.block_shape", [28, 28, 56])
    assert explicit.segment_block_shape() == [28, 28, 56]


def test_atomic_write_leaves_no_temporary(tmp_path: Path) -> None:
    path = tmp_path / "project.toml"
    cfg.save(cfg.from_preset("tiny"), path)
    cfg.save(cfg.from_preset("cremi"), path)
    assert [p.name for p in tmp_path.iterdir()] == ["project.toml"]
    assert cfg.load(path).preset == "cremi"
