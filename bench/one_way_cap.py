"""How much of the budget the 1-way marginals may take (``one_way.ONE_WAY_MAX``), on the
tables of ``bench/tables.py``: dp-marginals fitted directly (no release path, no gate) with
seeded noise, so that two caps compare on the same draws where their plans agree, scored by
``bench/tables.py``'s metrics on its split. Prints one JSON line per run; writes nothing.

    python bench/one_way_cap.py --data caravan rotterdam pbc --caps 0.6 0.8 --seeds 0 1 2
"""

from __future__ import annotations

import os

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")  # before torch loads (bench/fidelity.py)

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import torch

from bench.tables import DATASETS, DELTA, Table
from synth.marginals import DPMarginals, one_way
from synth.privacy import PrivacyBudget


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", nargs="+", default=["caravan"], choices=list(DATASETS))
    parser.add_argument("--caps", type=float, nargs="+", default=[one_way.ONE_WAY_MAX])
    parser.add_argument("--epsilons", type=float, nargs="+", default=[1.0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    args = parser.parse_args()
    torch.set_num_threads(1)
    default = one_way.ONE_WAY_MAX
    for name in args.data:
        table = Table(DATASETS[name], Path(tempfile.mkdtemp(prefix="one-way-cap-")))
        for eps in args.epsilons:
            for cap in args.caps:
                one_way.ONE_WAY_MAX = cap
                try:
                    for seed in args.seeds:
                        t = time.perf_counter()
                        model = DPMarginals(seed=seed, noise_seed=seed).fit(
                            table.train, table.schema, PrivacyBudget(eps, DELTA))
                        synthetic = model.sample(len(table.train), seed=seed)
                        seconds = time.perf_counter() - t
                        scores = table.evaluate(synthetic)
                        print(json.dumps({"data": name, "epsilon": eps, "cap": cap,
                                          "seed": seed, "fit_s": round(seconds, 1),
                                          **{k: round(v, 4) for k, v in scores.items()}}),
                              flush=True)
                finally:
                    one_way.ONE_WAY_MAX = default
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
