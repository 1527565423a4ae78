"""Map the older LSD scripts' yacs `config_*.py` files onto a ProjectConfig.

Those files are Python (`_C.TRAIN.BATCH_SIZE = 1`, with `if` blocks on earlier values and
expressions such as `(3,) * 3` or `math.pi / 2`). They are parsed with `ast` and
evaluated by a small, bounded interpreter: literals, + - * / // % and comparisons on
them, earlier `_C` values and `math`'s float constants. They are never executed, so a
file that imports torch or touches paths is safe; and nothing in one can make the
interpreter compute for long or fill memory: `**` is refused (`2**10**10` alone would
need gigabytes), numbers beyond 64 bits, values of more than `_MAX_ITEMS` items
and `%` formatting are refused, before they are computed. A refused or unknown value
is listed as not mapped, with the reason.
"""

from __future__ import annotations

import ast
import math
import operator
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from engine.errors import InputError
from engine.project import config as cfg

# An older config_*.py is a few kilobytes; anything far larger is not one.
_MAX_FILE_BYTES = 1_000_000
# The largest magnitude of an integer, the most items (nested sequences counted
# through, strings by character) a value may have: configs hold shapes, counts, rates.
_MAX_INT = 2**63
_MAX_ITEMS = 10_000


class _Unknown(Exception):
    """An expression the interpreter does not evaluate (a call, an f-string, ...)."""

    def __init__(self, expression: str, reason: str = "") -> None:
        super().__init__(expression)
        self.expression = expression
        self.reason = reason

    def describe(self, target: str) -> str:
        if self.reason:
            return f"not evaluated: {self.reason} ({self.expression}); set {target} by hand"
        return f"computed at run time ({self.expression}); set {target} by hand"


_BINARY: dict[type, Callable[[Any, Any], Any]] = {
    ast.Add: operator.add,
    ast.Sub: operator.sub,
    ast.Mult: operator.mul,
    ast.Div: operator.truediv,
    ast.FloorDiv: operator.floordiv,
    ast.Mod: operator.mod,
}
_COMPARE: dict[type, Callable[[Any, Any], Any]] = {
    ast.Eq: operator.eq,
    ast.NotEq: operator.ne,
    ast.Lt: operator.lt,
    ast.LtE: operator.le,
    ast.Gt: operator.gt,
    ast.GtE: operator.ge,
    ast.In: lambda a, b: a in b,
    ast.NotIn: lambda a, b: a not in b,
    ast.Is: operator.is_,
    ast.IsNot: operator.is_not,
}


def read_assignments(path: Path) -> dict[str, Any]:
    """`{"TRAIN.BATCH_SIZE": 1, ...}` for every `_C.`-rooted value the file sets."""
    try:
        size = path.stat().st_size
        if size > _MAX_FILE_BYTES:
            raise InputError(
                f"{path} is {size} bytes: an older config_*.py is a few kilobytes "
                f"(at most {_MAX_FILE_BYTES} are read)"
            )
        tree = ast.parse(path.read_bytes(), filename=str(path))
    except OSError as exc:
        raise InputError(f"cannot read {path}: {exc.strerror}") from None
    except SyntaxError as exc:
        raise InputError(f"{path} is not valid Python (line {exc.lineno}): {exc.msg}") from None
    except RecursionError:
        raise InputError(f"{path} nests expressions too deeply to be read") from None
    except ValueError as exc:  # null bytes, for one
        raise InputError(f"{path} is not valid Python: {exc}") from None
    values: dict[str, Any] = {}
    _run(tree.body, values)
    if not values:
        raise InputError(
            f"{path} sets no `_C.SECTION.KEY` values: is it a config_*.py of the older scripts?"
        )
    return values


def _run(statements: list[ast.stmt], values: dict[str, Any]) -> None:
    for node in statements:
        if isinstance(node, ast.Assign) and len(node.targets) == 1:
            key = _dotted(node.targets[0])
            if key is None:
                continue
            try:
                values[key] = _bounded_eval(node.value, values)
            except _Unknown as exc:
                values[key] = exc
        elif isinstance(node, ast.If):
            try:
                branch = node.body if _bounded_eval(node.test, values) else node.orelse
            except _Unknown:
                continue  # cannot tell which branch the old script took: take neither
            _run(branch, values)


def _dotted(node: ast.expr) -> str | None:
    parts: list[str] = []
    while isinstance(node, ast.Attribute):
        parts.append(node.attr)
        node = node.value
    if isinstance(node, ast.Name) and node.id in ("_C", "cfg", "C") and parts:
        return ".".join(reversed(parts))
    return None


def _source(node: ast.expr) -> str:
    try:
        text = ast.unparse(node)
    except RecursionError:
        return "a deeply nested expression"
    return text if len(text) <= 80 else text[:77] + "..."


def _bounded_eval(node: ast.expr, values: dict[str, Any]) -> Any:
    try:
        return _eval(node, values)
    except RecursionError:
        raise _Unknown(_source(node), "nested too deeply") from None
    except (ArithmeticError, TypeError, ValueError):
        # 1 / 0, "a" - 1, float overflow: the old script would have failed here too
        raise _Unknown(_source(node), "fails to evaluate") from None


def _size(value: Any) -> int:
    """Items in `value`, nested sequences counted through (strings by character)."""
    if isinstance(value, str | bytes):
        return len(value)
    if isinstance(value, tuple | list):
        return 1 + sum(_size(v) for v in value)
    return 1


def _checked(value: Any, node: ast.expr, size: int | None = None) -> Any:
    """`value`, if within the interpreter's bounds (`size`: its `_size`, if known)."""
    if isinstance(value, bool):
        return value
    if isinstance(value, int) and abs(value) > _MAX_INT:
        raise _Unknown(_source(node), "a number beyond 64 bits")
    if isinstance(value, float) and not math.isfinite(value):
        raise _Unknown(_source(node), "not a finite number")
    if (size if size is not None else _size(value)) > _MAX_ITEMS:
        raise _Unknown(_source(node), f"more than {_MAX_ITEMS} items")
    return value


def _binary(node: ast.BinOp, left: Any, right: Any) -> Any:
    """`left op right`, refusing what would be large before computing it."""
    if isinstance(node.op, ast.Mult):
        for seq, n in ((left, right), (right, left)):
            if isinstance(seq, str | bytes | tuple | list) and isinstance(n, int):
                # a repeated list shares its items, but every later step copies them
                wrapper = 1 if isinstance(seq, tuple | list) else 0
                _checked(seq, node, wrapper + (_size(seq) - wrapper) * max(n, 0))
    if isinstance(node.op, ast.Mod) and isinstance(left, str | bytes):
        raise _Unknown(_source(node), "%-formatting")
    return _checked(_BINARY[type(node.op)](left, right), node)


def _eval(node: ast.expr, values: dict[str, Any]) -> Any:
    if isinstance(node, ast.Constant):
        return _checked(node.value, node)
    if isinstance(node, ast.Tuple | ast.List):
        items = [_eval(e, values) for e in node.elts]
        return _checked(tuple(items) if isinstance(node, ast.Tuple) else items, node)
    if isinstance(node, ast.UnaryOp):
        operand = _eval(node.operand, values)
        if isinstance(node.op, ast.USub):
            return -operand
        if isinstance(node.op, ast.Not):
            return not operand
        if isinstance(node.op, ast.UAdd):
            return +operand
    if isinstance(node, ast.BinOp):
        if isinstance(node.op, ast.Pow):
            raise _Unknown(_source(node), "** (exponentiation) is refused")
        if type(node.op) in _BINARY:
            return _binary(node, _eval(node.left, values), _eval(node.right, values))
    if isinstance(node, ast.BoolOp):
        results = [_eval(v, values) for v in node.values]
        return all(results) if isinstance(node.op, ast.And) else any(results)
    if isinstance(node, ast.Compare) and len(node.ops) == 1 and type(node.ops[0]) in _COMPARE:
        return _COMPARE[type(node.ops[0])](
            _eval(node.left, values), _eval(node.comparators[0], values)
        )
    if isinstance(node, ast.IfExp):
        return _eval(node.body if _eval(node.test, values) else node.orelse, values)
    if isinstance(node, ast.Attribute):
        if isinstance(node.value, ast.Name) and node.value.id == "math":
            if isinstance(getattr(math, node.attr, None), float):
                return _checked(getattr(math, node.attr), node)
        key = _dotted(node)
        if key is not None and key in values and not isinstance(values[key], _Unknown):
            return values[key]
    raise _Unknown(_source(node))


# Old key → new dotted key. `MODEL.` stands for MODEL_ISO or MODEL_ANISO, whichever
# the old file's DATA.FIB chose; `_2D` variants apply when DATA.DIM_2D is set.
_DIRECT = {
    "SYSTEM.NUM_WORKERS": "system.num_workers",
    "SYSTEM.CACHE_SIZE": "system.cache_size",
    "DATA.RAW": "data.raw_key",
    "DATA.NEURON_LABELS": "data.labels_key",
    "DATA.NEURON_LABELS_MASK": "data.mask_key",
    "TRAIN.BATCH_SIZE": "train.batch_size",
    "TRAIN.EPOCHS": "train.iterations",
    "TRAIN.SAVE_EVERY": "train.checkpoint_every",
    "TRAIN.INITIAL_LR": "train.learning_rate",
    "TRAIN.LR_BETAS": "train.adam_betas",
    "TRAIN.MODEL_TYPE": "train.model_type",
    "TRAIN.AUGMENT": "train.augment.enabled",
}
_MODEL = {
    "NUM_FMAPS": "model.num_fmaps",
    "FMAP_INC_FACTOR": "model.fmap_inc_factor",
    "DOWNSAMPLE_FACTORS": "model.downsample_factors",
    "KERNEL_SIZE_DOWN": "model.kernel_size_down",
    "KERNEL_SIZE_UP": "model.kernel_size_up",
    "INPUT_SHAPE": "model.input_shape",
    "OUTPUT_SHAPE": "model.output_shape",
    "VOXEL_SIZE": "data.voxel_size",
    "LSD_SIGMA": "model.lsd_sigma",
    "LSD_DOWNSAMPLE": "model.lsd_downsample",
    "CONTROL_POINT_SPACING": "train.augment.control_point_spacing",
    "JITTER_SIGMA": "train.augment.jitter_sigma",
    "PROB_SLIP": "train.augment.prob_slip",
    "PROB_SHIFT": "train.augment.prob_shift",
    "MAX_MISALIGN": "train.augment.max_misalign",
    "GROWBOUNDARY_STEPS": "train.augment.grow_boundary",
}
_REASONS = {
    "DATA.HOME": "paths are per project in lsdctl (projects/NAME)",
    "DATA.DATA_DIR_PATH": "volumes live in the project's train/, val/ and test/ folders",
    "DATA.BRAIN_VOL": "volumes are imported with `lsdctl data import`",
    "TRAIN.DEVICE": "lsdctl picks CUDA when the daemon reserved a GPU, else the CPU",
    "TRAIN.CHECKPOINT": "pass --checkpoint to `lsdctl predict`",
    "SYSTEM.NUM_GPUS": "GPUs are reserved by the daemon (system.gpus picks indices)",
}


@dataclass
class LegacyMapping:
    config: cfg.ProjectConfig
    mapped: list[tuple[str, str, Any]] = field(default_factory=list)
    unmapped: list[tuple[str, str]] = field(default_factory=list)


def map_legacy_config(path: Path, base: cfg.ProjectConfig) -> LegacyMapping:
    """Apply what maps from the old file onto `base`; list what does not, with reasons."""
    values = read_assignments(path)
    dim_2d = values.get("DATA.DIM_2D") is True
    model_section = "MODEL_ISO" if values.get("DATA.FIB") in (1, True) else "MODEL_ANISO"
    updates: list[tuple[str, str, Any]] = []
    unmapped: list[tuple[str, str]] = []
    for old, value in values.items():
        target, reason = _target(old, model_section, dim_2d)
        if target is None:
            unmapped.append((old, reason))
        elif isinstance(value, _Unknown):
            unmapped.append((old, value.describe(target)))
        else:
            updates.append((old, target, _convert(target, value)))
    if "DATA.DIM_2D" in values:
        updates.insert(0, ("DATA.DIM_2D", "data.dims", 2 if dim_2d else 3))
    config = _apply(base, updates, unmapped, path)
    return LegacyMapping(config, updates, unmapped)


def _apply(
    base: cfg.ProjectConfig,
    updates: list[tuple[str, str, Any]],
    unmapped: list[tuple[str, str]],
    path: Path,
) -> cfg.ProjectConfig:
    """Validate base + updates; values lsdctl rejects move to `unmapped` with the reason."""
    while True:
        data = base.model_dump(mode="json")
        data["model"]["output_shape"] = None  # recomputed from the imported input shape
        for _old, target, value in updates:
            node = data
            *parents, leaf = target.split(".")
            for part in parents:
                node = node[part]
            node[leaf] = value
        try:
            return cfg.ProjectConfig.model_validate(data)
        except ValidationError as exc:
            rejected = _rejected(exc, updates)
            if not rejected:
                raise InputError(
                    f"the values mapped from {path.name} do not fit together: "
                    f"{cfg.describe_errors(exc)}"
                ) from None
            for item, message in rejected:
                updates.remove(item)
                unmapped.append((item[0], f"rejected as {item[1]}: {message}"))


def _rejected(
    exc: ValidationError, updates: list[tuple[str, str, Any]]
) -> list[tuple[tuple[str, str, Any], str]]:
    """The updates a validation error points at (by field, or by name in its message)."""
    found: dict[int, tuple[tuple[str, str, Any], str]] = {}
    for error in exc.errors():
        where = ".".join(str(p) for p in error["loc"] if not isinstance(p, int))
        message = error["msg"].removeprefix("Value error, ")
        for i, item in enumerate(updates):
            # Cross-field errors have no location but name the keys in their message.
            if item[1] == where or (not where and item[1] in message):
                found.setdefault(i, (item, message))
    return list(found.values())


def _target(old: str, model_section: str, dim_2d: bool) -> tuple[str | None, str]:
    if old in _DIRECT:
        return _DIRECT[old], ""
    if old in ("DATA.DIM_2D", "DATA.FIB"):
        return None, "used to choose between the 2D/3D and iso/aniso values"
    if old in _REASONS:
        return None, _REASONS[old]
    section, _, key = old.partition(".")
    if section in ("MODEL_ISO", "MODEL_ANISO"):
        if section != model_section:
            return None, f"the file's DATA.FIB selects {model_section}"
        base_key = key.removesuffix("_2D")
        if key.endswith("_2D") != dim_2d:
            return None, f"the file's DATA.DIM_2D selects the {'2D' if dim_2d else '3D'} variant"
        if base_key in _MODEL:
            return _MODEL[base_key], ""
    if old == ("TRAIN.NEIGHBORHOOD_2D" if dim_2d else "TRAIN.NEIGHBORHOOD"):
        return "train.neighborhood", ""
    return None, "no lsdctl equivalent"


def _convert(target: str, value: Any) -> Any:
    """Tuples to lists, model type names upper-case; yacs kernels stay nested lists."""
    if target == "train.model_type" and isinstance(value, str):
        return value.upper()
    return _lists(value)


def _lists(value: Any) -> Any:
    if isinstance(value, tuple | list):
        return [_lists(v) for v in value]
    return value
