"""Survival fidelity of DP synthesizers on medical-style records (flchain_identified).

Data: ../shared/datasets/flchain/flchain_identified.csv with schemas/flchain_identified.yaml:
identifiers dropped and quasi-identifiers generalised by ingest (HIPAA Safe Harbor), exactly as
a release sees them. The generalised rows are split 70/30 (fixed generator): synthesizers fit
on the 70% part at each epsilon (delta 1e-9) and seed, sample as many rows, and the samples are
post-processed by ``synth.survival.constrain`` (time within follow-up, no event after it).

  KM gap        largest vertical distance between the Kaplan-Meier curves of the real
                training rows and the synthetic rows (futime, death), over the times where
                the real curve still rests on 10% of the rows (up to the 90th percentile of
                real times, about 4,900 days); "all t": over every time (the tail beyond
                rests on a few rows, where one synthetic event moves the curve a lot)
  TSTR AUROC    HistGradientBoosting of "death within 5 years" (1,826 days; rows censored
                earlier left out) trained on synthetic rows, scored on the real 30% holdout;
                features: every column but futime, death and chapter (cause of death)
  C-index       Harrell's concordance of that model's risk score with (futime, death) on the
                real holdout: a Cox-style check that the synthetic rows rank risk as real ones
  fixed rows    share of sampled rows the survival post-processing changed
  fit s         wall seconds of fit

The train-on-real row fits the same model on the real 70% (its KM gap compares the holdout
with the training rows: about the floor a perfect synthesizer would reach). Results go to
bench/results/medical.json and BENCHMARKS.md between the medical markers.

    python bench/medical.py                     # dp-marginals and dp-independent, eps 1, 3 seeds
    python bench/medical.py --epsilons 0.1 1 10 --seeds 0
    python bench/medical.py --small             # smoke run, writes nothing
"""

from __future__ import annotations

import os

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")  # see bench/fidelity.py

import argparse
import json
import platform
import time
from pathlib import Path

import numpy as np
import pandas as pd
from sklearn.ensemble import HistGradientBoostingClassifier
from sklearn.metrics import roc_auc_score

from pipelines.ingest import ingest
from schemas import load_schema
from synth import survival
from synth.base import make_synthesizer
from synth.privacy import PrivacyBudget

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT.parent / "shared" / "datasets" / "flchain" / "flchain_identified.csv"
SCHEMA = ROOT / "schemas" / "flchain_identified.yaml"
RESULTS = ROOT / "bench" / "results" / "medical.json"
BENCHMARKS = ROOT / "BENCHMARKS.md"
BEGIN, END = "<!-- medical:begin -->", "<!-- medical:end -->"
HORIZON = 1826  # days: five years
DELTA = 1e-9


def _features(frame: pd.DataFrame) -> pd.DataFrame:
    x = frame.drop(columns=["futime", "death", "chapter"])
    return pd.DataFrame({c: (x[c].cat.codes if isinstance(x[c].dtype, pd.CategoricalDtype)
                             else x[c].astype("float64")) for c in x.columns})


def survival_scores(train: pd.DataFrame, test: pd.DataFrame, reference: pd.DataFrame,
                    schema) -> dict:
    """KM gap against ``reference`` and the TSTR / C-index of a model fitted on ``train``."""
    def arrays(frame):
        return frame["futime"].to_numpy(float), survival.event_indicator(frame, schema)

    real, synthetic = survival.kaplan_meier(*arrays(reference)), \
        survival.kaplan_meier(*arrays(train))
    until = survival.at_risk_time(reference["futime"], 0.1)
    label = survival.horizon_label(*arrays(train), HORIZON)
    known = label >= 0
    out = {"km_gap": survival.max_gap(real, synthetic, until),
           "km_gap_all": survival.max_gap(real, synthetic), "km_until": until,
           "tstr_auroc": float("nan"), "c_index": float("nan")}
    if len(np.unique(label[known])) < 2:
        return out
    model = HistGradientBoostingClassifier(random_state=0)
    model.fit(_features(train)[known], label[known])
    risk = model.predict_proba(_features(test))[:, 1]
    test_label = survival.horizon_label(*arrays(test), HORIZON)
    seen = test_label >= 0
    out["tstr_auroc"] = float(roc_auc_score(test_label[seen], risk[seen]))
    out["c_index"] = float(survival.concordance(*arrays(test), risk))
    return out


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--synthesizers", nargs="*", default=["dp-marginals", "dp-independent"])
    parser.add_argument("--epsilons", nargs="*", type=float, default=[1.0])
    parser.add_argument("--seeds", nargs="*", type=int, default=[0, 1, 2])
    parser.add_argument("--small", action="store_true", help="smoke run: 1,500 rows, no files")
    args = parser.parse_args(argv)
    schema = load_schema(SCHEMA)
    frame = ingest(DATA, schema).frame
    if args.small:
        frame = frame.sample(1500, random_state=0).reset_index(drop=True)
    order = np.random.default_rng(0).permutation(len(frame))
    cut = int(0.7 * len(frame))
    train, test = frame.iloc[order[:cut]], frame.iloc[order[cut:]]
    rows = [{"synthesizer": "train on real", **survival_scores(train, test, test, schema)}]
    for name in args.synthesizers:
        for eps in args.epsilons:
            for seed in args.seeds:
                params = {"seed": seed}
                if args.small and name == "dp-marginals":
                    params.update(rounds_per_column=1, components=64, iterations=5)
                start = time.perf_counter()
                model = make_synthesizer(name, **params).fit(train, schema,
                                                             PrivacyBudget(eps, DELTA))
                fit_s = time.perf_counter() - start
                raw = model.sample(len(train), seed=seed)
                fixed = survival.constrain(raw, schema)
                changed = float((raw.astype(str) != fixed.astype(str)).any(axis=1).mean())
                rows.append({"synthesizer": name, "epsilon": eps, "seed": seed,
                             "fit_s": fit_s, "fixed_rows": changed,
                             **survival_scores(fixed, test, train, schema)})
    if args.small:
        return
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps({"machine": f"{platform.machine()}, {os.cpu_count()} CPU "
                                   "threads", "rows": rows}, indent=2) + "\n")
    render(rows)


def render(rows: list[dict]) -> None:
    """Writes the table between the medical markers of BENCHMARKS.md (appends them once)."""
    frame = pd.DataFrame(rows)
    lines = [(f"flchain_identified.csv through Safe Harbor ingest; fit on 70% ({HORIZON}-day "
             "TSTR label), scored on the real 30%; mean ± sd over seeds; generated by "
             "`bench/medical.py` from `bench/results/medical.json`."), "",
             ("| synthesizer | epsilon | seeds | KM max gap | KM gap, all t | TSTR AUROC | "
              "C-index | fixed rows | fit s |"), "|---|---|---|---|---|---|---|---|---|"]
    fmt = lambda s, d=3: f"{s.mean():.{d}f}" + (f" ± {s.std():.{d}f}" if len(s) > 1 else "")
    for (name, eps), group in frame.groupby(["synthesizer", frame.get("epsilon", pd.Series(
            dtype=float)).fillna(-1)], sort=False):
        real = name == "train on real"
        lines.append(f"| {name} | {'-' if real else f'{eps:g}'} | "
                     f"{'-' if real else len(group)} | {fmt(group['km_gap'])} | "
                     f"{fmt(group['km_gap_all'])} | "
                     f"{fmt(group['tstr_auroc'])} | {fmt(group['c_index'])} | "
                     f"{'-' if real else fmt(group['fixed_rows'])} | "
                     f"{'-' if real else fmt(group['fit_s'], 1)} |")
    text = BENCHMARKS.read_text() if BENCHMARKS.exists() else ""
    block = BEGIN + "\n" + "\n".join(lines) + "\n" + END
    if BEGIN in text and END in text:
        text = text[:text.index(BEGIN)] + block + text[text.index(END) + len(END):]
    else:
        text = text.rstrip() + "\n\n## Medical records: survival fidelity\n\n" + block + "\n"
    BENCHMARKS.write_text(text)


if __name__ == "__main__":
    main()
