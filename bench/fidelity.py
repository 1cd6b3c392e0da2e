"""Fidelity of DP synthesizers on UCI Adult (canonical split), beside non-DP references.

Fit on adult.data (32,561 rows), TSTR scored on adult.test (16,281 rows), both from
../shared/datasets/adult, schema schemas/adult.yaml (declared from public documentation).
delta = 1e-9. Every registered synthesizer runs at each epsilon and seed with its default
parameters, and samples 40,000 rows. Metrics, against the real training rows unless said:

  TSTR AUROC     HistGradientBoosting of `income` trained on the synthetic rows, scored on
                 adult.test (random_state 0, so seeds vary only the synthesizer)
  2-way TVD      mean total variation distance over all 105 column pairs; numeric columns in
                 fixed bins from the declared bounds (``TableEncoder(schema, max_bins=20)``:
                 one bin per integer when a range has <= 20 values, else 20 equal bins, on a
                 log scale where the schema says so); missing values are one more state
  3-way L1       mean L1 distance over all 455 column triples, same bins
  Quality        SDMetrics 0.32.0 QualityReport (single table), metadata built from the
                 schema, real_correlation_threshold = real_association_threshold = 0 so every
                 pair counts; overall = mean of Column Shapes and Column Pair Trends. Scored
                 on all rows (no subsample): it takes under a second here
  pMSE           propensity mean squared error: equal-size samples of real training rows and
                 synthetic rows (min of the two sizes, drawn with a fixed generator), a
                 HistGradientBoosting classifier of "is synthetic", cross-fitted over 5
                 stratified folds so every row's propensity p comes from a model that did not
                 see it; pMSE = mean (p - c)^2 with c = 1/2 the synthetic share. 0 means
                 indistinguishable, 0.25 fully separable. The JSON also keeps that
                 classifier's AUROC.
  fit / sample   wall seconds of fit and of sampling 40,000 rows (OMP_WAIT_POLICY=PASSIVE
                 unless set otherwise; the metrics' classifiers run on one OpenMP thread)

References beside them (``--baselines``, default both): train-on-real (TSTR of the real
training rows; its distance metrics compare the real holdout adult.test with the training
rows: about the floor a perfect synthesizer would reach) and sdv-ctgan, SDV 2.0's
non-private CTGANSynthesizer with the same epochs as our DP GAN, one run per seed (SDV is
BUSL-licensed: the optional ``bench`` extra, imported only here, skipped when missing). The
DP independent-columns baseline is a registered synthesizer and runs with the others.

Runs merge into bench/results/fidelity.json by (synthesizer, epsilon, seed), so the grid
can be built over several invocations; BENCHMARKS.md's table between the fidelity markers
is re-rendered from that file after every run (or alone with --results-only).

    python bench/fidelity.py                                   # the full grid (slow)
    python bench/fidelity.py --synthesizers dp-vae --epsilons 1 --seeds 0 --baselines
    python bench/fidelity.py --synthesizers --baselines sdv-ctgan   # CTGAN only, 5 seeds
    python bench/fidelity.py --results-only                    # re-render the table
    python bench/fidelity.py --small                           # smoke run, writes nothing
"""

from __future__ import annotations

import os

# Before torch or scikit-learn load an OpenMP runtime: with the default (spinning) waits, on
# a shared 2-core machine a small DP-VAE fit took 25 s instead of 3 s and a HistGradient-
# Boosting fit 3.8 s instead of 0.3 s. Passive waits cost little on an idle machine.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import argparse
import contextlib
import datetime as dt
import importlib.metadata
import itertools
import json
import platform
import sys
import time
import traceback
import warnings
from pathlib import Path

import numpy as np
import pandas as pd

from pipelines.ingest import ingest
from schemas import Schema, load_schema, pandas_dtype
from synth.base import make_synthesizer, synthesizer_names
from synth.encoding import TableEncoder
from synth.metrics import features as as_features
from synth.metrics import marginal_distance
from synth.privacy import PrivacyBudget

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT.parent / "shared" / "datasets" / "adult"
BUNDLED = ROOT / "data" / "adult"  # the same files, gzipped, shipped with the repository


def adult_file(name: str) -> Path:
    """``adult.data`` / ``adult.test`` from ../shared/datasets, else the bundled copy."""
    return DATA / name if (DATA / name).exists() else BUNDLED / f"{name}.gz"
RESULTS = ROOT / "bench" / "results" / "fidelity.json"
BENCHMARKS = ROOT / "BENCHMARKS.md"
BEGIN, END = "<!-- fidelity:begin -->", "<!-- fidelity:end -->"
DELTA = 1e-9
ROWS = 40_000
BINS = 20
SDMETRICS_VERSION = "0.32.0"  # pinned in pyproject's test extra; recorded with every run
DEFAULT_GAN_EPOCHS = 10  # SDV CTGAN's epochs when no "dp-ctgan" is registered to copy them from
PMSE_FOLDS = 5

# --small: tiny training per synthesizer (keys each one's __init__ is assumed to take; keys a
# synthesizer's get_params() does not list are dropped with a note). Unlisted names: {}.
SMALL_PARAMS: dict[str, dict] = {
    "dp-vae": {"epochs": 1, "batch_size": 200, "accountant": "rdp"},  # rdp: quicker than prv
    "dp-ctgan": {"epochs": 1, "batch_size": 200, "accountant": "rdp"},
    "dp-marginals": {"rounds_per_column": 1, "components": 64, "iterations": 10},
    "dp-independent": {},
}
BASELINES = ("train-on-real", "sdv-ctgan")

# Targets of the issue (canonical split): epsilon -> (AUROC >=, 2-way TVD <=, 3-way L1 <=).
TARGETS = {0.1: (0.80, 0.12, 0.30), 1.0: (0.86, 0.04, 0.15), 10.0: (0.89, 0.02, 0.08)}
TARGET_SECONDS = 300.0  # fit + sample 40,000 rows on 2 CPU cores

ANCHORS = """\
Anchors, measured elsewhere on an 80/20 random split of all Adult rows (not this canonical
split, not re-run here), delta = 1e-9:

| reference | epsilon | TSTR AUROC | 2-way TVD | 3-way L1 |
|---|---|---|---|---|
| train on real | - | 0.925 | - | - |
| MST (Private-PGM) | 0.1 | 0.775 | 0.168 | - |
| MST (Private-PGM) | 1 | 0.82-0.83 | 0.056 | 0.19 |
| MST (Private-PGM) | 10 | 0.849 | 0.043 | - |
| DP independent columns | 1 | 0.56 | 0.086 | - |

MST fit took 262 to 371 s on 2 CPU cores.

Targets (this split): epsilon 0.1 / 1 / 10: TSTR AUROC >= 0.80 / 0.86 / 0.89; 2-way TVD <=
0.12 / 0.04 / 0.02; 3-way L1 <= 0.30 / 0.15 / 0.08; fit + sample 40,000 rows <= 5 minutes on
2 CPU cores. The "targets" column marks AUROC / TVD / L1 / time of the mean with ✓ or ✗."""


# ---------------------------------------------------------------------------- metrics

def tstr_auroc(train: pd.DataFrame, test: pd.DataFrame, target: str) -> float:
    from sklearn.ensemble import HistGradientBoostingClassifier
    from sklearn.metrics import roc_auc_score

    features = [c for c in train.columns if c != target]
    positive = test[target].cat.categories[-1]
    y = (train[target] == positive).to_numpy()
    if y.all() or not y.any():
        return 0.5  # a one-class synthetic target carries no signal
    model = HistGradientBoostingClassifier(categorical_features="from_dtype", random_state=0)
    model.fit(as_features(train[features]), y)
    return float(roc_auc_score(test[target] == positive,
                               model.predict_proba(as_features(test[features]))[:, 1]))


def pmse(real: pd.DataFrame, synthetic: pd.DataFrame, folds: int = PMSE_FOLDS) -> dict:
    """Propensity MSE of a cross-fitted HistGradientBoosting "is synthetic" classifier on
    equal-size samples (c = 1/2), and that classifier's AUROC."""
    from sklearn.ensemble import HistGradientBoostingClassifier
    from sklearn.metrics import roc_auc_score
    from sklearn.model_selection import StratifiedKFold, cross_val_predict

    m = min(len(real), len(synthetic))
    rng = np.random.default_rng(0)  # the metric is a fixed function of the two tables
    both = pd.concat([real.iloc[rng.choice(len(real), m, replace=False)],
                      synthetic.iloc[rng.choice(len(synthetic), m, replace=False)]],
                     ignore_index=True)
    y = np.r_[np.zeros(m), np.ones(m)]
    model = HistGradientBoostingClassifier(categorical_features="from_dtype", random_state=0)
    p = cross_val_predict(model, as_features(both), y, method="predict_proba",
                          cv=StratifiedKFold(folds, shuffle=True, random_state=0))[:, 1]
    return {"pmse": float(np.mean((p - 0.5) ** 2)), "pmse_auroc": float(roc_auc_score(y, p))}


def sdtypes(schema: Schema) -> dict[str, dict]:
    """SDV 2.0 / SDMetrics column metadata from the schema alone: declared bounds and
    categories, never detected from the rows (SDV's detection would store the exact min/max
    and category lists of the data)."""
    out = {}
    for c in schema.columns:
        meta: dict = {"range_is_nullable": c.nullable}
        if c.is_numeric:
            meta.update(sdtype="numerical", range_min=float(c.minimum),
                        range_max=float(c.maximum))
            if c.kind == "integer":
                meta["decimal_places"] = 0
        elif c.kind == "categorical":
            meta.update(sdtype="categorical", range_values=list(c.categories))
        elif c.kind == "boolean":
            meta["sdtype"] = "boolean"
        else:
            meta["sdtype"] = "datetime"
        out[c.name] = meta
    return out


def quality(real: pd.DataFrame, synthetic: pd.DataFrame, schema: Schema) -> dict:
    """SDMetrics QualityReport with every column pair scored (thresholds 0), all rows."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)  # single_table report is deprecated
        from sdmetrics.reports.single_table import QualityReport

        report = QualityReport()
        report.real_correlation_threshold = 0
        report.real_association_threshold = 0
        report.num_rows_subsample = None  # no unseeded subsample above 50,000 rows
        report.generate(real, synthetic, {"columns": sdtypes(schema)}, verbose=False)
    scores = report.get_properties().set_index("Property")["Score"]
    shapes = report.get_details("Column Shapes").set_index("Column")["Score"]
    return {"quality": float(report.get_score()),
            "column_shapes": float(scores["Column Shapes"]),
            "pair_trends": float(scores["Column Pair Trends"]),
            "column_shape_scores": {k: round(float(v), 4) for k, v in shapes.items()}}


class Bench:
    """The real tables and everything derived from them once."""

    def __init__(self, schema: Schema, train: pd.DataFrame, test: pd.DataFrame, rows: int):
        self.schema, self.train, self.test, self.rows = schema, train, test, rows
        self.target = schema.target
        self.binning = TableEncoder(schema, max_bins=BINS)
        self.real_codes = self.binning.encode(train)

    def evaluate(self, synthetic: pd.DataFrame, tstr_rows: pd.DataFrame | None = None) -> dict:
        """All metrics of ``synthetic`` against the real training rows; TSTR trains on
        ``tstr_rows`` (default: ``synthetic``). Seconds per metric under "seconds".

        Runs on one OpenMP thread: the metrics are not what is being timed, and on a shared,
        loaded 2-core machine two threads made HistGradientBoosting up to 10 times slower.
        """
        from threadpoolctl import threadpool_limits

        with threadpool_limits(1, user_api="openmp"):
            return self._evaluate(synthetic, tstr_rows)

    def _evaluate(self, synthetic, tstr_rows):
        out, seconds = {}, {}
        t = time.perf_counter()
        out["tstr_auroc"] = tstr_auroc(synthetic if tstr_rows is None else tstr_rows,
                                       self.test, self.target)
        seconds["tstr"] = time.perf_counter() - t
        t = time.perf_counter()
        codes = self.binning.encode(synthetic)
        out["tvd_2way"] = marginal_distance(self.real_codes, codes, self.binning.sizes, 2) / 2
        out["l1_3way"] = marginal_distance(self.real_codes, codes, self.binning.sizes, 3)
        seconds["marginals"] = time.perf_counter() - t
        t = time.perf_counter()
        out.update(quality(self.train, synthetic, self.schema))
        seconds["quality"] = time.perf_counter() - t
        t = time.perf_counter()
        out.update(pmse(self.train, synthetic))
        seconds["pmse"] = time.perf_counter() - t
        return {**out, "seconds": {k: round(v, 3) for k, v in seconds.items()}}


# ---------------------------------------------------------------------------- runs

def environment() -> dict:
    import torch

    def version(package):
        try:
            return importlib.metadata.version(package)
        except importlib.metadata.PackageNotFoundError:
            return None

    return {"machine": platform.machine(), "cpus": len(os.sched_getaffinity(0)),
            "torch_threads": torch.get_num_threads(),
            "omp_wait_policy": os.environ.get("OMP_WAIT_POLICY"),
            "gpu": torch.cuda.get_device_name() if torch.cuda.is_available() else None,
            "versions": {p: version(p) for p in ("torch", "scikit-learn", "sdmetrics", "sdv",
                                                  "pandas")},
            "date": dt.datetime.now(dt.UTC).isoformat(timespec="seconds")}


def small_params(name: str) -> dict:
    params = SMALL_PARAMS.get(name, {})
    accepted = make_synthesizer(name).get_params()
    dropped = sorted(set(params) - set(accepted))
    if dropped:
        print(f"note: {name} takes no {', '.join(dropped)}; running it with its defaults "
              f"for those (update SMALL_PARAMS in bench/fidelity.py)", flush=True)
    return {k: v for k, v in params.items() if k in accepted}


def run_dp(bench: Bench, name: str, eps: float, seed: int, params: dict) -> dict:
    t = time.perf_counter()
    model = make_synthesizer(name, seed=seed, **params).fit(
        bench.train, bench.schema, PrivacyBudget(eps, DELTA))
    fit_s = time.perf_counter() - t
    t = time.perf_counter()
    synthetic = model.sample(bench.rows, seed=seed)
    sample_s = time.perf_counter() - t
    result = bench.evaluate(synthetic)
    result["seconds"].update(fit=round(fit_s, 3), sample=round(sample_s, 3))
    privacy = getattr(model, "privacy_", None)
    spent = getattr(model, "epsilon_spent_", getattr(privacy, "epsilon", None))
    return {"synthesizer": name, "kind": "dp", "epsilon": eps, "delta": DELTA, "seed": seed,
            "params": _jsonable(model.get_params()),
            "fit_threads": getattr(model, "threads_", None),  # torch threads while fitting
            "epsilon_spent": None if spent is None else float(spent),
            "privacy": _privacy_summary(privacy), **result}


def _privacy_summary(privacy) -> dict | None:
    """The privacy report without its per-measurement list (kept short: counted instead)."""
    if not hasattr(privacy, "to_dict"):
        return None
    out = privacy.to_dict()
    out["measurements"] = len(out.get("measurements", ()))
    return _jsonable(out)


@contextlib.contextmanager
def _seeded_global_rngs(seed: int):
    """SDV/ctgan draw from the global numpy and torch generators while fitting: seed them
    for the fit and put them back afterwards."""
    import torch

    state = np.random.get_state()
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        np.random.seed(seed)
        try:
            yield
        finally:
            np.random.set_state(state)


def run_sdv_ctgan(bench: Bench, seed: int, epochs: int) -> dict | None:
    """Non-private SDV 2.0 CTGANSynthesizer, metadata from our schema; None if SDV is
    missing."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            import torch
            from sdv.metadata import Metadata
            from sdv.single_table import CTGANSynthesizer
    except ImportError as error:
        print(f"skipped sdv-ctgan: SDV is not installed ({error}); install the benchmark-only "
              "extra: .venv/bin/pip install -e '.[bench]'", flush=True)
        return None
    table = bench.schema.name
    metadata = Metadata.load_from_dict({"METADATA_SPEC_VERSION": "V2", "tables": {
        table: {"columns": sdtypes(bench.schema)}}})
    t = time.perf_counter()
    with _seeded_global_rngs(seed), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        model = CTGANSynthesizer(metadata, epochs=epochs, enable_gpu=torch.cuda.is_available())
        # SDV's CTGAN refuses pandas' category dtype: hand it strings
        model.fit({table: bench.train.astype({c.name: object for c in bench.schema.columns
                                              if c.kind == "categorical"})})
    fit_s = time.perf_counter() - t
    t = time.perf_counter()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        synthetic = model.sample(num_rows=bench.rows)[table]
    sample_s = time.perf_counter() - t
    synthetic = synthetic[bench.schema.names].astype(
        {c.name: pandas_dtype(c) for c in bench.schema.columns})
    result = bench.evaluate(synthetic)
    result["seconds"].update(fit=round(fit_s, 3), sample=round(sample_s, 3))
    return {"synthesizer": "sdv-ctgan", "kind": "baseline", "epsilon": None, "delta": None,
            "seed": seed, "params": {"epochs": epochs, "batch_size": model.batch_size,
                                     "pac": model.pac, "sdv": importlib.metadata.version("sdv")},
            **result}


def run_real(bench: Bench) -> dict:
    result = bench.evaluate(bench.test, tstr_rows=bench.train)
    return {"synthesizer": "train-on-real", "kind": "real", "epsilon": None, "delta": None,
            "seed": None, "params": {"distances": "real holdout (adult.test) vs training rows"},
            **result}


def gan_epochs() -> int:
    """The default epochs of our DP GAN, so that SDV's CTGAN trains as long."""
    if "dp-ctgan" in synthesizer_names():
        return int(make_synthesizer("dp-ctgan").get_params().get("epochs", DEFAULT_GAN_EPOCHS))
    return DEFAULT_GAN_EPOCHS


def _jsonable(value):
    return json.loads(json.dumps(value, default=lambda v: v.item() if hasattr(v, "item")
                                 else str(v)))


# ---------------------------------------------------------------------------- results

def _key(record: dict) -> tuple:
    return record["synthesizer"], record["epsilon"], record["seed"]


def merge(path: Path, new: list[dict]) -> list[dict]:
    """Records of ``path`` with ``new`` ones replacing those of the same key, written back."""
    old = json.loads(path.read_text())["runs"] if path.exists() else []
    keys = {_key(r) for r in new}
    records = [r for r in old if _key(r) not in keys] + new
    records.sort(key=_order)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps({"benchmark": "fidelity on UCI Adult, canonical split",
                               "runs": records}, indent=1) + "\n")
    tmp.replace(path)
    return records


def _order(r: dict) -> tuple:
    kind = {"real": 0, "dp": 1, "baseline": 2}.get(r["kind"], 3)
    return (kind, r["synthesizer"], r["epsilon"] or 0.0, -1 if r["seed"] is None else r["seed"])


def _stat(values, digits: int) -> str:
    v = np.asarray(values, dtype=float)
    text = f"{v.mean():.{digits}f}"
    return text + (f" ± {v.std(ddof=1):.{digits}f}" if len(v) > 1 else "")


def _targets(eps, means: dict) -> str:
    if eps not in TARGETS:
        return "-"
    auroc, tvd, l1 = TARGETS[eps]
    met = [means["tstr_auroc"] >= auroc, means["tvd_2way"] <= tvd, means["l1_3way"] <= l1,
           means["fit_sample"] <= TARGET_SECONDS]
    return "".join("✓" if m else "✗" for m in met)


def table(records: list[dict]) -> str:
    """Markdown: mean ± sample standard deviation over seeds per synthesizer and epsilon."""
    metrics = [("tstr_auroc", "TSTR AUROC", 3), ("tvd_2way", "2-way TVD", 3),
               ("l1_3way", "3-way L1", 3), ("quality", "Quality", 3),
               ("column_shapes", "shapes", 3), ("pair_trends", "pair trends", 3),
               ("pmse", "pMSE", 4)]
    head = (["synthesizer", "epsilon", "seeds"] + [m[1] for m in metrics]
            + ["fit s", "sample s", "targets"])
    rows = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    groups: dict[tuple, list[dict]] = {}
    for r in sorted(records, key=_order):
        groups.setdefault((r["synthesizer"], r["epsilon"]), []).append(r)
    for (name, eps), rs in groups.items():
        cells = [name if rs[0]["kind"] != "real" else "train on real",
                 "-" if eps is None else f"{eps:g}",
                 "-" if rs[0]["seed"] is None else str(len(rs))]
        cells += [_stat([r[k] for r in rs], d) for k, _, d in metrics]
        if rs[0]["kind"] == "real":
            cells += ["-", "-", "-"]
        else:
            cells += [_stat([r["seconds"]["fit"] for r in rs], 1),
                      _stat([r["seconds"]["sample"] for r in rs], 1)]
            means = {k: np.mean([r[k] for r in rs]) for k in ("tstr_auroc", "tvd_2way",
                                                              "l1_3way")}
            means["fit_sample"] = np.mean([r["seconds"]["fit"] + r["seconds"]["sample"]
                                           for r in rs])
            cells.append(_targets(eps, means) if rs[0]["kind"] == "dp" else "-")
        rows.append("| " + " | ".join(cells) + " |")
    return "\n".join(rows)


def render(records: list[dict]) -> str:
    envs = {(e["machine"], e["cpus"], e["gpu"] or "no GPU", e["versions"]["torch"],
             e["versions"]["sdmetrics"]) for e in (r["env"] for r in records)}
    machines = "; ".join(f"{m}, {c} CPU threads, {g}, torch {t}, sdmetrics {s}"
                         for m, c, g, t, s in sorted(envs))
    sizes = sorted({r["n_synthetic"] for r in records if r["kind"] != "real"})
    epochs = sorted({r["params"]["epochs"] for r in records if r["synthesizer"] == "sdv-ctgan"})
    lines = [f"Machine: {machines}. Generated by `bench/fidelity.py` from "
             f"`bench/results/fidelity.json`; mean ± sample standard deviation over seeds; "
             f"{' / '.join(f'{s:,}' for s in sizes) or '-'} synthetic rows; QualityReport and "
             f"pMSE on all rows (no subsample). The train-on-real row's distances compare the "
             f"real holdout (adult.test) with the training rows."
             + (f" sdv-ctgan: non-private, {' / '.join(map(str, epochs))} epochs."
                if epochs else ""),
             "", table(records), "", ANCHORS]
    return "\n".join(lines)


def write_markdown(path: Path, text: str, begin: str = BEGIN, end: str = END) -> None:
    """Replaces what lies between the markers ``begin`` and ``end`` of ``path`` by ``text``."""
    doc = path.read_text()
    if begin not in doc or end not in doc:
        raise SystemExit(f"{path} lacks the markers {begin} and {end}: add them where the "
                         f"table belongs")
    head, rest = doc.split(begin, 1)
    _, tail = rest.split(end, 1)
    path.write_text(f"{head}{begin}\n{text}\n{end}{tail}")


# ---------------------------------------------------------------------------- main

def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--synthesizers", nargs="*", default=None, metavar="NAME",
                        help=f"registry names (default: all registered: "
                             f"{' '.join(synthesizer_names())}); give none to run only "
                             f"baselines")
    parser.add_argument("--baselines", nargs="*", default=list(BASELINES),
                        choices=BASELINES, metavar="NAME",
                        help=f"non-DP references among {', '.join(BASELINES)} (default: "
                             f"both; sdv-ctgan is skipped when SDV is not installed)")
    parser.add_argument("--epsilons", type=float, nargs="+", default=[0.1, 1.0, 10.0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2, 3, 4])
    parser.add_argument("--rows", type=int, default=ROWS, help="synthetic rows per run")
    parser.add_argument("--ctgan-epochs", type=int, default=None,
                        help="epochs of sdv-ctgan (default: dp-ctgan's default epochs, else "
                             f"{DEFAULT_GAN_EPOCHS})")
    parser.add_argument("--small", action="store_true",
                        help="smoke run: 2,000 training rows, epsilon 1, seed 0, tiny "
                             "training; prints the table and writes nothing")
    parser.add_argument("--results-only", action="store_true",
                        help="re-render BENCHMARKS.md from the results JSON; run nothing")
    parser.add_argument("--results", type=Path, default=RESULTS)
    parser.add_argument("--markdown", type=Path, default=BENCHMARKS)
    args = parser.parse_args()

    if args.results_only:
        if not args.results.exists():
            parser.error(f"{args.results} does not exist yet: run the benchmark first")
        records = json.loads(args.results.read_text())["runs"]
        text = render(records)
        print(text)
        write_markdown(args.markdown, text)
        return 0

    names = synthesizer_names() if args.synthesizers is None else args.synthesizers
    unknown = sorted(set(names) - set(synthesizer_names()))
    if unknown:
        parser.error(f"unknown synthesizer(s) {', '.join(unknown)}; registered: "
                     f"{', '.join(synthesizer_names())}")
    schema = load_schema(ROOT / "schemas" / "adult.yaml")
    train = ingest(adult_file("adult.data"), schema).frame
    test = ingest(adult_file("adult.test"), schema).frame
    ctgan_epochs = args.ctgan_epochs or gan_epochs()
    params = {name: {} for name in names}
    if args.small:
        train, test, args.rows = train[:2000], test[:1000], 2000
        args.epsilons, args.seeds, ctgan_epochs = [1.0], [0], args.ctgan_epochs or 1
        params = {name: small_params(name) for name in names}
    bench = Bench(schema, train, test, args.rows)
    env = environment()
    if env["versions"]["sdmetrics"] != SDMETRICS_VERSION:
        print(f"warning: sdmetrics {env['versions']['sdmetrics']} is installed, the protocol "
              f"pins {SDMETRICS_VERSION}: Quality scores may not compare", file=sys.stderr)
    common = {"n_train": len(train), "n_test": len(test), "env": env}

    jobs = []
    if "train-on-real" in args.baselines:
        jobs.append(("train-on-real", None, None, lambda: run_real(bench)))
    for name, eps, seed in itertools.product(names, args.epsilons, args.seeds):
        jobs.append((name, eps, seed,
                     lambda n=name, e=eps, s=seed: run_dp(bench, n, e, s, params[n])))
    if "sdv-ctgan" in args.baselines:
        for seed in args.seeds:
            jobs.append(("sdv-ctgan", None, seed,
                         lambda s=seed: run_sdv_ctgan(bench, s, ctgan_epochs)))

    records, failed = [], []
    for name, eps, seed, job in jobs:
        try:
            record = job()
        except Exception:  # keep the rest of a long grid going; fail at the end
            traceback.print_exc()
            failed.append((name, eps, seed))
            continue
        if record is None:
            continue
        record.update(common, n_synthetic=len(test) if record["kind"] == "real" else args.rows)
        records.append(record)
        s = record["seconds"]
        print(f"{name} eps={eps} seed={seed}: AUROC {record['tstr_auroc']:.3f}, "
              f"TVD {record['tvd_2way']:.3f}, L1 {record['l1_3way']:.3f}, "
              f"quality {record['quality']:.3f}, pMSE {record['pmse']:.4f}; seconds "
              + ", ".join(f"{k} {v:.1f}" for k, v in s.items()), flush=True)
        if not args.small:  # merge as we go: an interrupted grid keeps what it finished
            merge(args.results, [record])

    if args.small:
        print(render(records) if records else "no results")
    elif records:
        all_records = json.loads(args.results.read_text())["runs"]
        text = render(all_records)
        print(text)
        write_markdown(args.markdown, text)
    if failed:
        print(f"failed: {failed}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
