"""The release checks on Adult: what the fidelity suite, the leakage checks and the canary
audit measure for a good release and for a broken one, and what they cost.

Fits each synthesizer at epsilon = 1, delta = 1e-9 on 90% of the bundled Adult training
file (the run's default holdout is the other 10%), samples 10,000 rows, and runs the checks
``synth run`` runs. Prints a markdown table (values are statistics of the real data: this is
a benchmark on a public data set, not a release).

    python bench/checks.py                      # dp-marginals, dp-vae and dp-independent
    python bench/checks.py --synthesizers dp-marginals --seed 1
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import numpy as np  # noqa: E402

from pipelines.config import FidelityThresholds  # noqa: E402
from pipelines.ingest import ingest  # noqa: E402
from pipelines.leakage import check_leakage  # noqa: E402
from pipelines.validate.fidelity import observed, validate_fidelity  # noqa: E402
from schemas import load_schema  # noqa: E402
from synth.audit import audit  # noqa: E402
from synth.base import make_synthesizer  # noqa: E402
from synth.privacy import PrivacyBudget  # noqa: E402

SHORT = {"expect_table_association_difference_to_be_at_most": "association diff",
         "expect_table_propensity_mse_to_be_at_most": "pMSE",
         "expect_table_tstr_score_to_be_at_least": "TSTR AUROC"}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--synthesizers", nargs="+",
                        default=["dp-marginals", "dp-vae", "dp-independent"])
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    schema = load_schema(ROOT / "schemas" / "adult.yaml")
    frame = ingest(ROOT / "data" / "adult" / "adult.data.gz", schema).frame
    order = np.random.default_rng(args.seed).permutation(len(frame))
    cut = int(0.9 * len(frame))
    train, holdout = frame.iloc[order[:cut]], frame.iloc[order[cut:]]
    gates = FidelityThresholds()
    print("| synthesizer | max KS | max TV | association diff | pMSE | TSTR AUROC | suite "
          "| leakage warnings | canary audit eps_lower / claim | seconds: fidelity / "
          "leakage / audit |\n|---|---|---|---|---|---|---|---|---|---|")
    for name in args.synthesizers:
        model = make_synthesizer(name, seed=args.seed).fit(train, schema,
                                                           PrivacyBudget(1.0, 1e-9))
        synthetic = model.sample(10_000, seed=args.seed)
        t0 = time.perf_counter()
        outcome = validate_fidelity(train, synthetic, schema, gates)
        t1 = time.perf_counter()
        leakage = check_leakage(train, holdout, synthetic, schema, n_attacks=2000,
                                reference_rows=10_000, seed=args.seed)
        t2 = time.perf_counter()
        audited = audit(model.privacy_, seed=args.seed)
        t3 = time.perf_counter()
        rows = observed(outcome)
        ks = max(r["observed"] for r in rows if "ks_distance" in r["expectation"])
        tv = max(r["observed"] for r in rows if "tv_distance" in r["expectation"])
        table = {SHORT[r["expectation"]]: r["observed"] for r in rows
                 if r["expectation"] in SHORT}
        print(f"| {name} | {ks:.3f} | {tv:.3f} | {table['association diff']:.3f} | "
              f"{table['pMSE']:.3f} | {table['TSTR AUROC']:.3f} | "
              f"{'passed' if outcome.success else 'FAILED'} | {len(leakage.warnings)} | "
              f"{audited.epsilon_lower:.2f} / {audited.epsilon_claimed:.2f} | "
              f"{t1 - t0:.1f} / {t2 - t1:.1f} / {t3 - t2:.1f} |", flush=True)
    print(f"\nBounds: KS <= {gates.ks_max}, TV <= {gates.tv_max}, association <= "
          f"{gates.association_max}, pMSE <= {gates.pmse_max}, TSTR >= {gates.tstr_min}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
