"""Checkpoints are read weights-only: a pickle payload is refused, never run; a file
that is no checkpoint, or whose layers do not fit the model, is one clear InputError."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from engine.errors import InputError
from engine.models import build_model
from engine.project import config as cfg
from engine.runs.checkpoint_check import check_checkpoint
from engine.runs.checkpoints import check_fits, load_checkpoint, load_weights

ROOT = Path(__file__).parents[3]


class _Payload:
    """Pickled, it calls os.system: loading it with weights_only=False would run it."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self) -> tuple[object, tuple[str]]:
        return (os.system, (f"touch {self.marker}",))


class _Custom:
    pass


def _model(config: cfg.ProjectConfig) -> torch.nn.Module:
    return build_model(
        config.train.model_type, config.model, config.data.dims, len(config.affinity_neighborhood())
    )


def test_a_pickle_payload_is_refused_and_never_runs(tmp_path: Path) -> None:
    marker = tmp_path / "ran"
    path = tmp_path / "evil.pt"
    torch.save({"model": {"w": torch.zeros(1)}, "x": _Payload(marker)}, path)
    with pytest.raises(InputError, match=r"refused.*posix\.system|refused.*os\.system"):
        load_checkpoint(path)
    assert not marker.exists()
    custom = tmp_path / "custom.pt"
    torch.save({"model": {"w": torch.zeros(1)}, "c": _Custom()}, custom)
    with pytest.raises(InputError, match="_Custom"):
        load_checkpoint(custom)


@pytest.mark.parametrize(
    ("content", "match"),
    [
        (b"not a checkpoint\n", "not a torch checkpoint"),
        (b"\x80\x04truncated", "not a torch checkpoint"),
        (b"PK\x03\x04 a broken zip", "not a torch checkpoint"),
    ],
)
def test_files_that_are_no_checkpoint(tmp_path: Path, content: bytes, match: str) -> None:
    path = tmp_path / "f.pt"
    path.write_bytes(content)
    with pytest.raises(InputError, match=match):
        load_checkpoint(path)


def test_other_scripts_checkpoint_is_named(tmp_path: Path) -> None:
    path = tmp_path / "model_checkpoint_100"
    torch.save({"model_state_dict": {"w": torch.zeros(1)}, "epoch": 3}, path)
    with pytest.raises(InputError, match="lsdctl model import"):
        load_checkpoint(path)


def test_a_layer_that_does_not_fit_is_named_with_its_shapes(tmp_path: Path) -> None:
    config = cfg.from_preset("tiny")
    model = _model(config)
    path = tmp_path / "ok.pt"
    torch.save({"model": model.state_dict(), "iteration": 7}, path)
    assert load_weights(path, _model(config))["iteration"] == 7
    smaller = _model(cfg.from_preset("tiny", {"model": {"num_fmaps": 4}}))
    with pytest.raises(InputError, match=r"layer unet\.down\.0\.0\.weight is \[6, 1, 3, 3, 3\]"):
        check_fits(smaller, model.state_dict(), "ok.pt")
    aff = _model(cfg.from_preset("tiny", {"train": {"model_type": "AFF"}}))
    with pytest.raises(InputError, match=r"no weights for layer head\.0\.weight"):
        check_fits(aff, model.state_dict(), "ok.pt")


def test_the_check_runs_in_a_child_without_torch_here(tmp_path: Path) -> None:
    config = cfg.from_preset("tiny")
    path = tmp_path / "ok.pt"
    torch.save({"model": _model(config).state_dict()}, path)
    check_checkpoint(path, config)
    with pytest.raises(InputError, match="does not fit the model: layer"):
        check_checkpoint(path, cfg.from_preset("tiny", {"model": {"fmap_inc_factor": 3}}))
    # engine.runs.checkpoint_check itself stays light: the resolver and the CLI import it.
    code = (
        "import sys, engine.runs.checkpoint_check, engine.runs.resolve; "
        "print('torch' in sys.modules)"
    )
    result = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True)
    assert result.stdout.strip() == "False", result.stderr
