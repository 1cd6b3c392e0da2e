"""DP-SGD step time against its peers, in one run on one machine, printed as ratios.

For an MLP d-256-256-1 (the size of a CTGAN discriminator) and a small CNN on 28x28 images
(Conv 1-32, GroupNorm, Conv 32-64 stride 2, Linear), and each batch size, the median
wall time of one training step (forward, backward, update, on a fixed batch) for:
  plain          non-private Adam step
  ours           synth.dpsgd.DPStep: ghost-norm clipping, one reweighted matmul per layer
  ours_secure    the same with secure_noise=True (noise from the OS CSPRNG)
  opacus_hooks   Opacus 1.6 make_private, grad_sample_mode="hooks" (the default)
  opacus_ghost   Opacus 1.6 make_private, grad_sample_mode="ghost" (fast gradient clipping)
All DP variants use the same noise multiplier and clipping bound. On a GPU, torch's profiler
also sums the kernel time of our step ("wall / kernels": 1.0 means no launch gaps, the GPU
busy all the step; more is time the GPU waits for the host).

    python bench/dp_step.py                 # full run; writes bench/results/ and BENCHMARKS.md
    python bench/dp_step.py --small         # seconds-long smoke run (CI), prints only
"""

import argparse
import json
import platform
import statistics
import time
from pathlib import Path

import torch
from torch import nn

from synth.dpsgd import DPStep
from synth.randomness import PrivateRandom

ROOT = Path(__file__).resolve().parents[1]


def mlp(d_in: int) -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(d_in, 256), nn.LeakyReLU(0.2), nn.Linear(256, 256),
                         nn.LeakyReLU(0.2), nn.Linear(256, 1))


class SmallCNN(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv1 = nn.Conv2d(1, 32, 3, padding=1)
        self.norm = nn.GroupNorm(8, 32)
        self.conv2 = nn.Conv2d(32, 64, 3, stride=2, padding=1)
        self.head = nn.Linear(64 * 14 * 14, 1)

    def forward(self, x):
        h = nn.functional.leaky_relu(self.norm(self.conv1(x)), 0.2)
        return self.head(nn.functional.leaky_relu(self.conv2(h), 0.2).flatten(1))


def cnn(_d_in: int) -> nn.Module:
    torch.manual_seed(0)
    return SmallCNN()


MODELS = {"mlp": (mlp, lambda b, d, dev, g: torch.randn(b, d, device=dev, generator=g)),
          "cnn": (cnn, lambda b, d, dev, g: torch.randn(b, 1, 28, 28, device=dev, generator=g))}


def median_ms(step, warmup: int, iters: int, sync) -> float:
    for _ in range(warmup):
        step()
    times = []
    for _ in range(iters):
        sync()
        t = time.perf_counter()
        step()
        sync()
        times.append((time.perf_counter() - t) * 1000)
    return statistics.median(times)


def kernel_ms(step, iters: int) -> float | None:
    """Summed GPU kernel time of one step (by torch's profiler, over ``iters`` steps); None
    without CUDA."""
    if not torch.cuda.is_available():
        return None
    from torch.profiler import ProfilerActivity, profile

    step()
    torch.cuda.synchronize()
    with profile(activities=[ProfilerActivity.CPU, ProfilerActivity.CUDA]) as prof:
        for _ in range(iters):
            step()
        torch.cuda.synchronize()
    return sum(e.self_device_time_total for e in prof.key_averages()) / iters / 1000


def bench_batch(kind: str, batch: int, d_in: int, device: torch.device, warmup: int,
                iters: int) -> dict:
    from opacus import PrivacyEngine
    from torch.utils.data import DataLoader, TensorDataset

    g = torch.Generator(device=device).manual_seed(0)
    make, inputs = MODELS[kind]
    x = inputs(batch, d_in, device, g)
    y = (torch.rand(batch, 1, device=device, generator=g) < 0.5).float()
    sync = (lambda: torch.cuda.synchronize()) if device.type == "cuda" else (lambda: None)
    sigma, clip = 1.0, 1.0
    bce = nn.BCEWithLogitsLoss(reduction="none")
    out = {}

    model = make(d_in).to(device)
    opt = torch.optim.Adam(model.parameters(), lr=1e-4)

    def plain():
        opt.zero_grad(set_to_none=True)
        bce(model(x), y).mean().backward()
        opt.step()

    out["plain"] = median_ms(plain, warmup, iters, sync)

    model = make(d_in).to(device)
    step = DPStep(model, torch.optim.Adam(model.parameters(), lr=1e-4), sigma, clip, batch,
                  PrivateRandom(0))
    def ours():
        step(lambda: bce(model(x), y)[:, 0])

    out["ours"] = median_ms(ours, warmup, iters, sync)
    out["ours_kernels"] = kernel_ms(ours, iters)
    step.close()
    model = make(d_in).to(device)
    step = DPStep(model, torch.optim.Adam(model.parameters(), lr=1e-4), sigma, clip, batch,
                  PrivateRandom(0), secure_noise=True)
    out["ours_secure"] = median_ms(lambda: step(lambda: bce(model(x), y)[:, 0]), warmup, iters,
                                   sync)
    step.close()

    loader = DataLoader(TensorDataset(x.cpu(), y.cpu()), batch_size=batch)
    for mode in ("hooks", "ghost"):
        model = make(d_in).to(device)
        opt = torch.optim.Adam(model.parameters(), lr=1e-4)
        made = PrivacyEngine(accountant="prv").make_private(
            module=model, optimizer=opt, criterion=nn.BCEWithLogitsLoss(), data_loader=loader,
            noise_multiplier=sigma, max_grad_norm=clip, poisson_sampling=False,
            grad_sample_mode=mode)
        if mode == "ghost":
            pmodel, popt, crit, _ = made
        else:
            (pmodel, popt, _), crit = made, nn.BCEWithLogitsLoss()

        def opacus_step(pmodel=pmodel, popt=popt, crit=crit):
            popt.zero_grad(set_to_none=True)
            crit(pmodel(x), y).backward()
            popt.step()

        out[f"opacus_{mode}"] = median_ms(opacus_step, warmup, iters, sync)
    return out


def machine() -> str:
    if torch.cuda.is_available():
        return torch.cuda.get_device_name(0)
    return f"{platform.processor() or platform.machine()}, {torch.get_num_threads()} CPU threads"


def table(results: list[dict], name: str) -> str:
    rows = [f"Machine: {name}; torch {torch.__version__}; median ms per step "
            f"(MLP {results[0]['d_in']}-256-256-1; CNN as in bench/dp_step.py).", "",
            "| model | batch | plain | ours | ours, secure noise | Opacus hooks | Opacus ghost | "
            "ours / plain | hooks / ours | ghost / ours | ours: wall / kernels |",
            "|---|---|---|---|---|---|---|---|---|---|---|"]
    for r in results:
        t = r["ms"]
        gap = f"{t['ours'] / t['ours_kernels']:.2f}" if t.get("ours_kernels") else "-"
        rows.append(f"| {r['model']} | {r['batch']:,} | {t['plain']:.2f} | {t['ours']:.2f} | "
                    f"{t['ours_secure']:.2f} | "
                    f"{t['opacus_hooks']:.2f} | {t['opacus_ghost']:.2f} | "
                    f"{t['ours'] / t['plain']:.2f} | {t['opacus_hooks'] / t['ours']:.1f} | "
                    f"{t['opacus_ghost'] / t['ours']:.1f} | {gap} |")
    return "\n".join(rows)


def write_results(bench: str, device: torch.device, name: str, results: list[dict],
                  text: str) -> None:
    """bench/results/<bench>-<cpu|gpu>.json, and ``text`` between BENCHMARKS.md's
    ``<bench>:<cpu|gpu>`` markers (appended where they are not yet)."""
    out = ROOT / "bench" / "results"
    out.mkdir(exist_ok=True)
    slug = "gpu" if device.type == "cuda" else "cpu"
    (out / f"{bench}-{slug}.json").write_text(json.dumps(
        {"machine": name, "torch": torch.__version__, "results": results}, indent=2))
    bench_md = ROOT / "BENCHMARKS.md"
    doc = bench_md.read_text()
    begin, end = f"<!-- {bench}:{slug}:begin -->", f"<!-- {bench}:{slug}:end -->"
    block = f"{begin}\n{text}\n{end}"
    if begin in doc:
        doc = doc[:doc.index(begin)] + block + doc[doc.index(end) + len(end):]
    else:
        doc += f"\n{block}\n"
    bench_md.write_text(doc)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--small", action="store_true", help="tiny smoke run; writes nothing")
    parser.add_argument("--batches", type=int, nargs="+", default=[512, 4096])
    parser.add_argument("--cnn-batches", type=int, nargs="+", default=[256])
    parser.add_argument("--d-in", type=int, default=256)
    parser.add_argument("--iters", type=int, default=30)
    args = parser.parse_args()
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if args.small:
        args.batches, args.cnn_batches, args.iters, args.d_in = [64], [8], 5, 32
    runs = [("mlp", b) for b in args.batches] + [("cnn", b) for b in args.cnn_batches]
    results = [{"model": kind, "batch": b, "d_in": args.d_in,
                "ms": bench_batch(kind, b, args.d_in, device, warmup=3, iters=args.iters)}
               for kind, b in runs]
    name = machine()
    text = table(results, name)
    print(text)
    if args.small:
        return
    write_results("dp_step", device, name, results, text)


if __name__ == "__main__":
    main()
