"""GPU check of the `cremi-paper` preset's network: the paper's CREMI MTLSD net at full
size (84x268x268 -> 48x56x56) trains on CUDA; prints iterations per second, peak GPU
memory, and that a checkpoint of it round-trips weights-only onto the GPU.

Torch and engine.models only (no gunpowder): the batches are random tensors of the
right shapes, so this measures the network, not the data pipeline.

    python scripts/gpu_cremi_paper.py [ITERATIONS]      # from the repository root
"""

from __future__ import annotations

import sys
import tempfile
import time
import tomllib
from pathlib import Path
from types import SimpleNamespace

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from engine.models import build_model

PRESET = Path(__file__).resolve().parents[1] / "engine" / "project" / "presets" / "cremi-paper.toml"


def main() -> int:
    if not torch.cuda.is_available():
        print("no CUDA device: nothing to check")
        return 0
    iterations = int(sys.argv[1]) if len(sys.argv) > 1 else 50
    preset = tomllib.loads(PRESET.read_text())
    model_config = SimpleNamespace(constant_upsample=True, **preset["model"])
    device = torch.device("cuda")
    model = build_model("MTLSD", model_config, 3, 3).to(device)
    shapes = model.output_shapes(model_config.input_shape)
    print(f"cremi-paper MTLSD: input {model_config.input_shape} -> {dict(shapes)}")
    print(f"parameters: {sum(p.numel() for p in model.parameters()):,}")
    optimizer = torch.optim.Adam(model.parameters(), lr=0.5e-4, betas=(0.95, 0.999))
    raw = torch.rand(1, 1, *model_config.input_shape, device=device)
    out = shapes["lsds"]
    gt_lsds, gt_affs = torch.rand(1, 10, *out, device=device), torch.rand(1, 3, *out, device=device)
    torch.cuda.reset_peak_memory_stats()
    for phase, count in (("warm-up", 5), ("timed", iterations)):
        torch.cuda.synchronize()
        start = time.perf_counter()
        for _ in range(count):
            optimizer.zero_grad(set_to_none=True)
            lsds, affs = model(raw)
            loss = ((lsds - gt_lsds) ** 2).mean() + ((affs - gt_affs) ** 2).mean()
            loss.backward()
            optimizer.step()
        torch.cuda.synchronize()
        elapsed = time.perf_counter() - start
        print(f"{phase}: {count} iterations, {count / elapsed:.2f} it/s, loss {loss.item():.4f}")
    print(f"peak GPU memory: {torch.cuda.max_memory_allocated() / 2**30:.2f} GiB")
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "checkpoint.pt"
        torch.save({"model": model.state_dict(), "iteration": iterations}, path)
        state = torch.load(path, map_location=device, weights_only=True)
        fresh = build_model("MTLSD", model_config, 3, 3).to(device)
        fresh.load_state_dict(state["model"])
        with torch.no_grad():
            same = torch.equal(fresh(raw)[1], model(raw)[1])
        print(f"weights-only round trip on {device}: outputs identical = {same}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
