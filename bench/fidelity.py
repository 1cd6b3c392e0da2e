"""Fidelity of DP synthesizers on UCI Adult (canonical split), beside train-on-real.

Trains on adult.data, scores on adult.test (../shared/datasets/adult), schema
schemas/adult.yaml (declared from public documentation). For each epsilon and seed:
  TSTR AUROC   HistGradientBoosting of `income` trained on synthetic rows, scored on adult.test
  2-way TVD    mean total variation distance over all column pairs (numeric columns in 20
               fixed bins over their declared bounds) against the real training rows
  3-way L1     mean L1 distance over all column triples, same binning
  fit + sample seconds (sampling 40,000 rows)

    python bench/fidelity.py                          # epsilon 0.1 1 10, 1 seed; writes results
    python bench/fidelity.py --epsilons 1 --seeds 0 1 2 3 4
    python bench/fidelity.py --small                  # smoke run on 2,000 rows, prints only
"""

import argparse
import itertools
import json
import time
from pathlib import Path

import numpy as np

from pipelines.ingest import ingest
from schemas import load_schema
from synth.base import make_synthesizer
from synth.encoding import TableEncoder
from synth.privacy import PrivacyBudget

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT.parent / "shared" / "datasets" / "adult"
DELTA = 1e-9


def marginal_distance(real_codes, synth_codes, sizes, k: int) -> float:
    """Mean over all k-column subsets of the L1 distance between normalised histograms."""
    out = []
    for cols in itertools.combinations(range(len(sizes)), k):
        dims = [sizes[c] for c in cols]
        r = np.bincount(np.ravel_multi_index(real_codes[:, cols].T, dims),
                        minlength=int(np.prod(dims))) / len(real_codes)
        s = np.bincount(np.ravel_multi_index(synth_codes[:, cols].T, dims),
                        minlength=int(np.prod(dims))) / len(synth_codes)
        out.append(np.abs(r - s).sum())
    return float(np.mean(out))


def tstr_auroc(train, test, target: str) -> float:
    from sklearn.ensemble import HistGradientBoostingClassifier
    from sklearn.metrics import roc_auc_score

    features = [c for c in train.columns if c != target]
    prep = lambda f: f[features].astype({c: "float64" for c in features
                                         if str(f[c].dtype) == "Int64"})
    positive = train[target].cat.categories[-1]
    y = (train[target] == positive).to_numpy()
    if y.all() or not y.any():
        return 0.5
    model = HistGradientBoostingClassifier(categorical_features="from_dtype", random_state=0)
    model.fit(prep(train), y)
    return float(roc_auc_score(test[target] == positive, model.predict_proba(prep(test))[:, 1]))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epsilons", type=float, nargs="+", default=[0.1, 1.0, 10.0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0])
    parser.add_argument("--synthesizer", default="dp-vae")
    parser.add_argument("--rows", type=int, default=40_000)
    parser.add_argument("--small", action="store_true")
    args = parser.parse_args()
    schema = load_schema(ROOT / "schemas" / "adult.yaml")
    train = ingest(DATA / "adult.data", schema).frame
    test = ingest(DATA / "adult.test", schema).frame
    params = {}
    if args.small:
        train, test, args.rows, args.epsilons = train[:2000], test[:1000], 2000, [1.0]
        params = {"epochs": 1, "batch_size": 200}
    binning = TableEncoder(schema, max_bins=20)
    real_codes = binning.encode(train)
    target = schema.target
    results = [{"synthesizer": "train-on-real", "epsilon": None,
                "tstr_auroc": tstr_auroc(train, test, target)}]
    for eps, seed in itertools.product(args.epsilons, args.seeds):
        t = time.perf_counter()
        model = make_synthesizer(args.synthesizer, seed=seed, **params).fit(
            train, schema, PrivacyBudget(eps, DELTA))
        synthetic = model.sample(args.rows, seed=seed)
        seconds = time.perf_counter() - t
        codes = binning.encode(synthetic)
        results.append({
            "synthesizer": args.synthesizer, "epsilon": eps, "seed": seed,
            "epsilon_spent": model.epsilon_spent_, "tstr_auroc": tstr_auroc(synthetic, test,
                                                                             target),
            "tvd_2way": marginal_distance(real_codes, codes, binning.sizes, 2) / 2,
            "l1_3way": marginal_distance(real_codes, codes, binning.sizes, 3),
            "fit_sample_s": seconds})
        print(json.dumps(results[-1]))
    text = table(results)
    print(text)
    if args.small:
        return
    (ROOT / "bench" / "results").mkdir(exist_ok=True)
    (ROOT / "bench" / "results" / f"fidelity-{args.synthesizer}.json").write_text(
        json.dumps(results, indent=2))


def table(results) -> str:
    rows = ["| synthesizer | epsilon | seeds | TSTR AUROC | 2-way TVD | 3-way L1 | fit+sample s |",
            "|---|---|---|---|---|---|---|"]
    real = results[0]
    rows.append(f"| train on real | - | - | {real['tstr_auroc']:.3f} | 0 | 0 | - |")
    by_eps = {}
    for r in results[1:]:
        by_eps.setdefault((r["synthesizer"], r["epsilon"]), []).append(r)
    for (name, eps), rs in by_eps.items():
        def stat(key):
            v = np.array([r[key] for r in rs])
            return f"{v.mean():.3f}" + (f" ± {v.std():.3f}" if len(v) > 1 else "")
        rows.append(f"| {name} | {eps:g} | {len(rs)} | {stat('tstr_auroc')} | "
                    f"{stat('tvd_2way')} | {stat('l1_3way')} | {stat('fit_sample_s')} |")
    return "\n".join(rows)


if __name__ == "__main__":
    main()
