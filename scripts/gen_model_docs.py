"""Write docs/models.md, the model types, from engine.models.registry.

    .venv/bin/python scripts/gen_model_docs.py            # rewrite docs/models.md
    .venv/bin/python scripts/gen_model_docs.py --check    # exit 1 if docs/models.md is stale

One row per registered model type, in the registry's order. tests/test_docs.py fails
when the file differs from a fresh generation, so the page cannot drift from the code.
"""

from __future__ import annotations

import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from engine.models.registry import MODEL_TYPES, ModelTypeSpec  # noqa: E402

OUTPUT = ROOT / "docs" / "models.md"

HEADER = """\
# Model types

Generated from [engine/models/registry.py](../engine/models/registry.py) by
`scripts/gen_model_docs.py`; do not edit by hand (the test suite fails when this page
and the registry disagree). A project's type is `train.model_type` (`lsdctl config set
train.model_type NAME`, or `lsdctl train --model NAME` for one run).

"""

FOOTER = """
Targets: `lsds` are the local shape descriptors (10 channels in 3D, 6 in 2D), `affs`
the affinities (one channel per `train.neighborhood` offset, more with
`train.long_range`). The training pipeline computes a target and its weights for each
output; segmentation, and so validation during training, needs `pred_affs`.

## Adding a model type

One `ModelTypeSpec` entry in `engine/models/registry.py`: its name, a one-line summary,
the builder of its network (a function of `engine/models/lsd_models.py`, or of a new
module with a new network class), its outputs, the outputs its loss trains and that
loss (`engine/models/losses.py`), and for a two-stage type the types of its stages. The
config, the CLI's help, training, prediction and validation read it from there; run
`scripts/gen_model_docs.py` to add its row here.
"""


def _row(spec: ModelTypeSpec) -> str:
    if spec.auto_context:
        stage2 = f"{spec.stage2} on {spec.stage1}'s output" + (
            " and raw" if spec.stage2_raw else ""
        )
        network = f"two stages: {spec.stage1}, then {stage2}"
    else:
        network = spec.network.rpartition(":")[2].removesuffix("_network").replace("_", "-")
    trains = " + ".join(spec.trains)
    if spec.stage1 is not None:
        trains = f"{' + '.join(MODEL_TYPES[spec.stage1].trains)} (stage one), then {trains}"
    cells = [
        f"`{spec.name}`",
        spec.summary,
        network,
        ", ".join(spec.outputs),
        trains,
        ", ".join(f"`{name}`" for name in spec.predicts),
    ]
    return "| " + " | ".join(cells) + " |"


def render() -> str:
    """The page, from the registry as it is now."""
    lines = [
        "| type | what it is | network | outputs (targets) | loss trains | predicts |",
        "|---|---|---|---|---|---|",
        *(_row(spec) for spec in MODEL_TYPES.values()),
    ]
    return HEADER + "\n".join(lines) + "\n" + FOOTER


def main(argv: list[str]) -> int:
    fresh = render()
    if "--check" in argv:
        if OUTPUT.read_text() != fresh:
            sys.stderr.write("docs/models.md is stale: run scripts/gen_model_docs.py\n")
            return 1
        return 0
    OUTPUT.write_text(fresh)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
