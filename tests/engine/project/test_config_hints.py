"""A config key named in the wrong section points to the right one."""

from __future__ import annotations

import pytest

from engine.errors import InputError
from engine.project import config as cfg


def test_min_masked_lives_in_preprocess() -> None:
    config = cfg.from_preset("cremi-paper")
    with pytest.raises(InputError, match=r"did you mean preprocess\.min_masked\?"):
        cfg.with_value(config, "train.min_masked", 0.3)
    assert cfg.with_value(config, "preprocess.min_masked", 0.3).preprocess.min_masked == 0.3
    with pytest.raises(InputError) as unknown:
        cfg.resolve_key(config, "train.no_such_key")
    assert "did you mean" not in str(unknown.value)
