"""Fit and sampling time of one tabular synthesizer on UCI Adult, on whatever device it picks.

The quick check for a machine where ``bench/fidelity.py``'s full protocol is too much (no
sdmetrics, a short lease of a GPU): the same data, delta and row count, the fit and the
sampling of 40,000 rows timed, and two of its metrics so that a fast run is seen to be a
faithful one: TSTR AUROC and 3-way L1 (both as ``bench/fidelity.py`` defines them). Prints
one JSON line per run; writes nothing.

    python bench/fit_time.py                                  # dp-marginals, epsilon 10
    python bench/fit_time.py --synthesizer dp-vae --epsilons 1 10 --seeds 0 1
    python bench/fit_time.py --epsilons 1 --threads 1 --noise-seed 0  # compare two versions
"""

from __future__ import annotations

import os

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")  # before torch loads (bench/fidelity.py)

import argparse
import json
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.fidelity import DELTA, ROOT, ROWS, Bench, adult_file, environment, tstr_auroc
from pipelines.ingest import ingest
from schemas import load_schema
from synth.base import make_synthesizer, synthesizer_names
from synth.metrics import marginal_distance
from synth.privacy import PrivacyBudget


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--synthesizer", default="dp-marginals", choices=synthesizer_names())
    parser.add_argument("--epsilons", type=float, nargs="+", default=[10.0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0])
    parser.add_argument("--rows", type=int, default=ROWS, help="synthetic rows per run")
    parser.add_argument("--threads", type=int, default=None,
                        help="torch threads of the fit, where the synthesizer takes them")
    parser.add_argument("--noise-seed", type=int, default=None,
                        help="seeded noise, where the synthesizer takes it: the same "
                             "measurements from one version of the code to the next")
    args = parser.parse_args()
    accepted = make_synthesizer(args.synthesizer).get_params()
    extra = {k: v for k, v in (("threads", args.threads), ("noise_seed", args.noise_seed))
             if v is not None and k in accepted}
    schema = load_schema(ROOT / "schemas" / "adult.yaml")
    train = ingest(adult_file("adult.data"), schema).frame
    test = ingest(adult_file("adult.test"), schema).frame
    bench = Bench(schema, train, test, args.rows)  # the binning and real codes of fidelity.py
    env = environment()
    for eps in args.epsilons:
        for seed in args.seeds:
            t = time.perf_counter()
            model = make_synthesizer(args.synthesizer, seed=seed, **extra).fit(
                train, schema, PrivacyBudget(eps, DELTA))
            fit = time.perf_counter() - t
            t = time.perf_counter()
            synthetic = model.sample(bench.rows, seed=seed)
            sample = time.perf_counter() - t
            print(json.dumps({
                "synthesizer": args.synthesizer, "epsilon": eps, "seed": seed,
                "seconds": {"fit": round(fit, 2), "sample": round(sample, 2)},
                "l1_3way": marginal_distance(bench.real_codes, bench.binning.encode(synthetic),
                                             bench.binning.sizes, 3),
                "tstr_auroc": tstr_auroc(synthetic, bench.test, bench.target), "env": env}),
                flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
