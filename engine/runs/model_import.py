"""`python -m engine.runs.model_import FILE PROJECT [--name NAME] [--overwrite]`: convert a
checkpoint of the older PyTorch LSD scripts into an lsdctl checkpoint of the project.

Those scripts (catena's `local_shape_descriptors`) save `{"model_state_dict": …,
"optimizer_state_dict": …, "epoch": …}` of a funlib.learn.torch UNet with `lsd_head`
and/or `aff_head` ConvPasses. Its layers map one to one onto lsdctl's UNet:

    unet.l_conv.L.conv_pass.I.*   → unet.down.L.I.*
    unet.r_up.H.L.up.*            → unet.upsample.H.L.up.*   (transposed convolutions)
    unet.r_conv.H.L.conv_pass.I.* → unet.up.H.L.I.*
    lsd_head.conv_pass.0.*        → lsd_head.0.* (MTLSD) or head.0.* (LSD)
    aff_head.conv_pass.0.*        → aff_head.0.* (MTLSD) or head.0.* (AFF)

The model type follows from the heads. The file is read weights-only; a layer that does
not map (batch norm, a mito head, an auto-context pair) is named and nothing is written.
The result, `PROJECT/models/NAME.pt`, must fit the project's config (layers and shapes):
`lsdctl predict --checkpoint models/NAME.pt` and `lsdctl train --init-from models/NAME.pt`
then take it. Exit codes: 0 written, 2 bad input (one line on stderr).
"""

from __future__ import annotations

import argparse
import os
import re
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from engine.errors import InputError

MODELS_DIR = "models"
_LEGACY_KEY = "model_state_dict"
_RULES = (
    (re.compile(r"unet\.l_conv\.(\d+)\.conv_pass\.(\d+)\.(weight|bias)"), "unet.down.{0}.{1}.{2}"),
    (re.compile(r"unet\.r_up\.(\d+)\.(\d+)\.up\.(weight|bias)"), "unet.upsample.{0}.{1}.up.{2}"),
    (
        re.compile(r"unet\.r_conv\.(\d+)\.(\d+)\.conv_pass\.(\d+)\.(weight|bias)"),
        "unet.up.{0}.{1}.{2}.{3}",
    ),
)
_HEAD = re.compile(r"(lsd_head|aff_head)\.conv_pass\.0\.(weight|bias)")


def convert(state: Mapping[str, Any]) -> tuple[dict[str, Any], str]:
    """(lsdctl state dict, model type) of an older scripts' model state dict; InputError
    naming the layers that do not map."""
    heads = {m.group(1) for name in state if (m := _HEAD.fullmatch(name))}
    if heads == {"lsd_head", "aff_head"}:
        model_type, head_names = "MTLSD", {"lsd_head": "lsd_head", "aff_head": "aff_head"}
    elif heads == {"lsd_head"}:
        model_type, head_names = "LSD", {"lsd_head": "head"}
    elif heads == {"aff_head"}:
        model_type, head_names = "AFF", {"aff_head": "head"}
    else:
        raise InputError(
            "the checkpoint has no lsd_head or aff_head layers: not a model of the older LSD "
            "scripts (MTLSD, LSD or AFF)"
        )
    mapped: dict[str, Any] = {}
    unmapped: list[str] = []
    for name, value in state.items():
        target = _map(name, head_names)
        if target is None:
            unmapped.append(name)
        else:
            mapped[target] = value
    if unmapped:
        shown = ", ".join(unmapped[:4]) + (
            f" and {len(unmapped) - 4} more" if len(unmapped) > 4 else ""
        )
        raise InputError(
            f"cannot map {len(unmapped)} layer(s) of the checkpoint onto lsdctl's {model_type} "
            f"model: {shown} (batch norm, extra heads and auto-context pairs have no lsdctl "
            "equivalent)"
        )
    return mapped, model_type


def _map(name: str, heads: Mapping[str, str]) -> str | None:
    head = _HEAD.fullmatch(name)
    if head is not None:
        return f"{heads[head.group(1)]}.0.{head.group(2)}"
    for pattern, template in _RULES:
        match = pattern.fullmatch(name)
        if match is not None:
            return template.format(*match.groups())
    return None


def import_model(source: Path, project: Path, name: str | None, overwrite: bool) -> Path:
    """Convert `source` into PROJECT/models/NAME.pt (default NAME: the file's stem),
    checked against the project's config; returns the written path."""
    import torch

    from engine.models import build_model
    from engine.project import config as cfg
    from engine.project.layout import check_name
    from engine.runs.checkpoints import check_fits

    config_file = project / "project.toml"
    if not config_file.is_file():
        raise InputError(f"no project at {project}: `lsdctl init {project.name}` creates it")
    config = cfg.load(config_file)
    if not source.is_file():
        raise InputError(f"checkpoint file {source} does not exist: check the path")
    stem = check_name(name or source.name.removesuffix(".pt"), what="model name")
    target = project / MODELS_DIR / f"{stem}.pt"
    if target.exists() and not overwrite:
        raise InputError(
            f"{MODELS_DIR}/{stem}.pt already exists in {project.name}: pass --name or --overwrite"
        )
    state = _read_legacy(source)
    mapped, model_type = convert(state[_LEGACY_KEY])
    if model_type != config.train.model_type.value:
        raise InputError(
            f"{source} holds a {model_type} model, project {project.name} trains "
            f"{config.train.model_type.value}: `lsdctl config set {project.name} "
            f"train.model_type {model_type}` first"
        )
    with torch.device("meta"):
        model = build_model(
            model_type, config.model, config.data.dims, len(config.affinity_neighborhood())
        )
    check_fits(model, mapped, str(source))
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.with_name(f".{target.name}.tmp-{os.getpid()}")
    try:
        torch.save(
            {
                "model": mapped,
                "model_type": model_type,
                "iteration": int(state.get("epoch", 0) or 0),
                "imported_from": str(source.resolve()),
                "config": config.model_dump(mode="json"),
            },
            tmp,
        )
        os.replace(tmp, target)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return target


def _read_legacy(source: Path) -> dict[str, Any]:
    """The older scripts' checkpoint, weights-only; an lsdctl one is pointed elsewhere."""
    from engine.runs.checkpoints import MODEL_KEY, load_checkpoint

    try:
        load_checkpoint(source)
    except InputError as exc:
        if _LEGACY_KEY not in str(exc):
            raise
    else:
        raise InputError(
            f"{source} is already an lsdctl checkpoint ('{MODEL_KEY}' state): give it to "
            "predict --checkpoint or train --init-from as it is"
        )
    import torch

    state: dict[str, Any] = torch.load(source, map_location="cpu", weights_only=True)
    return state


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m engine.runs.model_import", description=__doc__)
    parser.add_argument("source", type=Path)
    parser.add_argument("project", type=Path)
    parser.add_argument("--name", default=None)
    parser.add_argument("--overwrite", action="store_true")
    args = parser.parse_args(argv)
    try:
        target = import_model(args.source, args.project, args.name, args.overwrite)
    except InputError as exc:
        sys.stderr.write(f"{exc}\n")
        return 2
    sys.stdout.write(f"{target}\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
