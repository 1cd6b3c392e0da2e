"""A grid of DP-SGD fits one by one against the same grid as one stacked model, in one run.

K fits of the MLP of bench/dp_step.py (d-256-256-1, a CTGAN discriminator's size) on the
same data, each with its own seed and budget (epsilon cycling through 1, 3, 10), are
trained twice: one after another by ``synth.dpsgd.train_dp``, then all at once by
``synth.many.train_dp_many``. The same plans and seeds go into both, so both do the same
work and the printed weights' difference shows they did the same thing. Throughput is fits
per minute; the ratio is (one by one) / (together) wall time.

    python bench/many_models.py                  # K = 8; writes bench/results/, BENCHMARKS.md
    python bench/many_models.py --models 4 16    # other grid sizes
    python bench/many_models.py --small          # seconds-long smoke run (CI), prints only
"""

import argparse
import copy
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import torch  # noqa: E402
from torch.nn import functional as F  # noqa: E402

from bench.dp_step import machine, mlp, write_results  # noqa: E402
from synth.dpsgd import DPSGDConfig, plan, train_dp  # noqa: E402
from synth.many import train_dp_many  # noqa: E402
from synth.privacy import PrivacyBudget  # noqa: E402
from synth.randomness import PrivateRandom  # noqa: E402

EPSILONS = (1.0, 3.0, 10.0)


def loss(module, batch, _generators):
    return F.binary_cross_entropy_with_logits(module(batch[..., :-1])[..., 0], batch[..., -1],
                                              reduction="none")


def grid(k: int, n: int, config: DPSGDConfig):
    """K (plan, randomness) pairs: seeds 0..K-1, epsilons cycling through EPSILONS."""
    out = []
    for seed in range(k):
        random = PrivateRandom(seed)
        budget = PrivacyBudget(EPSILONS[seed % len(EPSILONS)], 1e-6)
        out.append((plan(n, budget, config, random), random))
    return out


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


def run(k: int, rows: int, d_in: int, config: DPSGDConfig, device: torch.device) -> dict:
    g = torch.Generator().manual_seed(0)
    x = torch.randn(rows, d_in, generator=g)
    y = (x[:, :4].sum(1) + torch.randn(rows, generator=g) > 0).float()
    data = torch.cat([x, y[:, None]], 1).to(device)
    nets = [mlp(d_in).to(device) for _ in range(k)]
    together = [copy.deepcopy(m) for m in nets]
    train_dp(copy.deepcopy(nets[0]), loss, data, *grid(1, rows, config)[0])  # warm-up
    pairs = grid(k, rows, config)  # plans made outside the timings (a calibration each)
    sync(device)
    start = time.perf_counter()
    for net, (p, r) in zip(nets, pairs):
        train_dp(net, loss, data, p, r)
    sync(device)
    alone = time.perf_counter() - start
    pairs = grid(k, rows, config)
    sync(device)
    start = time.perf_counter()
    train_dp_many(together, loss, data, [p for p, _ in pairs], [r for _, r in pairs])
    sync(device)
    both = time.perf_counter() - start
    diff = max((a - b).abs().max().item() for m, t in zip(nets, together)
               for a, b in zip(m.parameters(), t.parameters()))
    return {"models": k, "rows": rows, "steps": [p.steps for p, _ in pairs],
            "one_by_one_s": alone, "together_s": both, "ratio": alone / both,
            "max_weight_difference": diff}


def table(results: list[dict], name: str, config: DPSGDConfig, d_in: int) -> str:
    rows = [f"Machine: {name}; torch {torch.__version__}; MLP {d_in}-256-256-1, batch "
            f"{config.batch_size}, {config.epochs} epochs, epsilons cycling 1, 3, 10 "
            "(delta 1e-6).", "",
            "| models | rows | steps each | one by one (s) | together (s) | fits/min one by one "
            "| fits/min together | throughput ratio | max weight difference |",
            "|---|---|---|---|---|---|---|---|---|"]
    for r in results:
        steps = sorted(set(r["steps"]))
        rows.append(f"| {r['models']} | {r['rows']:,} | {steps[0]}-{steps[-1]} | "
                    f"{r['one_by_one_s']:.1f} | {r['together_s']:.1f} | "
                    f"{60 * r['models'] / r['one_by_one_s']:.1f} | "
                    f"{60 * r['models'] / r['together_s']:.1f} | {r['ratio']:.2f} | "
                    f"{r['max_weight_difference']:.1e} |")
    return "\n".join(rows)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--small", action="store_true", help="tiny smoke run; writes nothing")
    parser.add_argument("--models", type=int, nargs="+", default=[8])
    parser.add_argument("--rows", type=int, default=20_000)
    parser.add_argument("--d-in", type=int, default=256)
    parser.add_argument("--batch-size", type=int, default=512)
    parser.add_argument("--epochs", type=int, default=2)
    args = parser.parse_args()
    if args.small:
        args.models, args.rows, args.d_in, args.batch_size, args.epochs = [3], 300, 8, 64, 1
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    config = DPSGDConfig(epochs=args.epochs, batch_size=args.batch_size, accountant="rdp")
    results = [run(k, args.rows, args.d_in, config, device) for k in args.models]
    name = machine()
    text = table(results, name, config, args.d_in)
    print(text)
    if args.small:
        return
    write_results("many_models", device, name, results, text)


if __name__ == "__main__":
    main()
