"""Faithful on the tables people bring: the default synthesizer beside MST and AIM on five
real tables, and how its fit time grows with the number of columns.

Data sets (``../shared/datasets/``; schemas reviewed from public documentation, in schemas/):

  adult      32,561 x 15 (canonical split: adult.test is the holdout), target income
  flchain     7,874 x 11, target death                    schemas/flchain.yaml
  rotterdam   2,982 x 14, target death                    schemas/rotterdam.yaml
  caravan     5,822 x 86, target Purchase (6% Yes)        schemas/caravan.yaml
  pbc           418 x 19, target status (3 classes)       schemas/pbc_patients.yaml

Every set but adult is split once, 80/20, stratified on the target with a fixed generator:
the same split for every synthesizer and seed. delta = 1e-9.

Synthesizers:

  ours       the default synthesizer through the whole release (``pipelines.recipe.
             run_release``, default settings, a fresh temporary release folder and ledger):
             whether the gate published it, and the published (or quarantined) rows. The run
             holds out its default share of the records from training, so it trains on fewer
             rows than MST and AIM do. As many rows are released as the training split has
  mst, aim   Private-PGM's reference mechanisms (``mechanisms/mst.py``, ``mechanisms/aim.py``
             of a Private-PGM checkout given with ``--pgm``, running on the ``mbi`` package:
             the ``bench`` extra), on the codes of ``TableEncoder(schema, max_bins=20)``:
             the schema's bounds and the metrics' own bins; values are drawn uniformly inside
             a bin. AIM's workload is every pair of columns; its model-size limit and
             iterations are ``--aim-size`` and ``--aim-iters`` (the reference's defaults take
             hours a run on 2 cores)
  independent  ``dp-independent`` (1-way marginals only): the floor

Metrics, against the real training rows unless said:

  TSTR       HistGradientBoosting of the target trained on the synthetic rows, scored on the
             holdout: AUROC (macro one-vs-rest for more than two classes)
  2-way TVD  mean total variation distance over all column pairs, in the bins above (missing
             values one more state)
  3-way L1   mean L1 distance over column triples (all of them, or a fixed sample of 2,000)
  pMSE       propensity MSE of a cross-fitted "is synthetic" classifier (bench/fidelity.py)
  s          wall seconds: ours, the whole release (ingest, fit, sample, gate, checks);
             the others, fit and sample

``--scaling`` instead times the default synthesizer's fit and sample alone at epsilon 1 on
tables of 50,000 rows and 15 / 30 / 60 / 100 columns (caravan's columns, then adult's,
rows drawn with replacement from each set separately: real columns, a fixed width).

Records merge into bench/results/tables.json by (data set, synthesizer, epsilon, seed);
BENCHMARKS.md's tables between the ``tables`` markers are re-rendered after every run.

    python bench/tables.py --pgm ../private-pgm                 # the whole grid (hours)
    python bench/tables.py --pgm ../private-pgm --data caravan --epsilons 1 --seeds 0
    python bench/tables.py --synthesizers ours independent      # without Private-PGM
    python bench/tables.py --scaling                            # 15 / 30 / 60 / 100 columns
    python bench/tables.py --scaling --widths 15 30             # some of them
    python bench/tables.py --results-only
    python bench/tables.py --smoke                              # tiny run, writes nothing
"""

from __future__ import annotations

import os

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")  # see bench/fidelity.py

import argparse
import contextlib
import itertools
import json
import logging
import shutil
import sys
import tempfile
import time
import traceback
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.fidelity import _jsonable, _stat, environment, pmse, write_markdown  # noqa: E402
from pipelines.config import DEFAULT_SYNTHESIZER, RunConfig  # noqa: E402
from pipelines.ingest import ingest  # noqa: E402
from pipelines.plan import quarantine_dir  # noqa: E402
from pipelines.publish import DATA_FILE  # noqa: E402
from pipelines.recipe import run_release  # noqa: E402
from pipelines.validate import ValidationFailed  # noqa: E402
from schemas import Schema, load_schema, pandas_dtype  # noqa: E402
from synth.base import make_synthesizer  # noqa: E402
from synth.encoding import TableEncoder  # noqa: E402
from synth.metrics import features as as_features  # noqa: E402
from synth.metrics import marginal_distance  # noqa: E402
from synth.privacy import PrivacyBudget  # noqa: E402

DATASETS_DIR = ROOT.parent / "shared" / "datasets"
RESULTS = ROOT / "bench" / "results" / "tables.json"
BENCHMARKS = ROOT / "BENCHMARKS.md"
BEGIN, END = "<!-- tables:begin -->", "<!-- tables:end -->"
DELTA = 1e-9
BINS = 20
TRIPLES = 2_000
HOLDOUT_SHARE = 0.2
SYNTHESIZERS = ("ours", "mst", "aim", "independent")
SCALING_ROWS = 50_000
SCALING_COLUMNS = (15, 30, 60, 100)


@dataclass(frozen=True)
class Data:
    name: str
    files: tuple[str, ...]  # one file (split here) or (train, holdout)
    schema: str
    role: str  # "decided": defaults were chosen on it; "check": not tuned on


DATASETS = {
    "adult": Data("adult", ("adult/adult.data", "adult/adult.test"), "adult.yaml", "decided"),
    "flchain": Data("flchain", ("flchain/flchain.csv",), "flchain.yaml", "check"),
    "rotterdam": Data("rotterdam", ("rotterdam/rotterdam.csv",), "rotterdam.yaml", "decided"),
    "caravan": Data("caravan", ("caravan/caravan.csv",), "caravan.yaml", "decided"),
    "pbc": Data("pbc", ("pbc/pbc.csv",), "pbc_patients.yaml", "check"),
}


# ---------------------------------------------------------------------------- data

class Table:
    """One data set split into training and holdout files and frames, and its bins."""

    def __init__(self, data: Data, work: Path, rows: int | None = None):
        self.data = data
        self.schema: Schema = load_schema(ROOT / "schemas" / data.schema)
        self.target = self.schema.target
        paths = [DATASETS_DIR / f for f in data.files]
        if len(paths) == 1:
            paths = self._split(paths[0], work)
        if rows is not None:  # smoke runs: the first rows only
            paths = [self._head(p, work, n) for p, n in zip(paths, (rows, rows // 2))]
        self.train_file, holdout_file = paths
        self.train = ingest(self.train_file, self.schema).frame
        self.test = ingest(holdout_file, self.schema).frame
        self.binning = TableEncoder(self.schema, max_bins=BINS)
        self.real_codes = self.binning.encode(self.train)
        k = len(self.binning.sizes)
        triples = list(itertools.combinations(range(k), 3))
        if len(triples) > TRIPLES:
            pick = np.random.default_rng(0).choice(len(triples), TRIPLES, replace=False)
            triples = [triples[i] for i in sorted(pick)]
        self.triples = triples

    def _split(self, path: Path, work: Path) -> list[Path]:
        """80/20, stratified on the target's raw text, a fixed generator."""
        raw = pd.read_csv(path, dtype=str, keep_default_na=False)
        rng = np.random.default_rng(0)
        test = np.zeros(len(raw), dtype=bool)
        for _, index in raw.groupby(self.target).indices.items():
            pick = rng.permutation(index)[: int(round(HOLDOUT_SHARE * len(index)))]
            test[pick] = True
        out = []
        for part, rows in (("train", ~test), ("holdout", test)):
            out.append(work / f"{self.data.name}-{part}.csv")
            raw[rows].to_csv(out[-1], index=False)
        return out

    @staticmethod
    def _head(path: Path, work: Path, n: int) -> Path:
        out = work / f"head-{n}-{path.name}"
        if path.suffix == ".csv":
            pd.read_csv(path, dtype=str, keep_default_na=False).head(n).to_csv(out, index=False)
        else:  # adult's raw files: no header, keep the lines as they are
            lines = path.read_text().splitlines(keepends=True)
            skip = 1 if lines[0].startswith("|") else 0
            out.write_text("".join(lines[: n + skip]))
        return out

    def typed(self, frame: pd.DataFrame) -> pd.DataFrame:
        return frame[self.schema.names].astype({c.name: pandas_dtype(c)
                                                for c in self.schema.columns})

    # ------------------------------------------------------------------------ metrics

    def evaluate(self, synthetic: pd.DataFrame) -> dict:
        from threadpoolctl import threadpool_limits

        with threadpool_limits(1, user_api="openmp"):  # see bench/fidelity.Bench.evaluate
            codes = self.binning.encode(synthetic)
            sizes = self.binning.sizes
            return {"tstr": tstr(synthetic, self.test, self.target),
                    "tvd_2way": marginal_distance(self.real_codes, codes, sizes, 2) / 2,
                    "l1_3way": marginal_distance(self.real_codes, codes, sizes, 3,
                                                 self.triples),
                    **pmse(self.train, synthetic)}


def tstr(train: pd.DataFrame, test: pd.DataFrame, target: str) -> float:
    """AUROC on ``test`` of a classifier of ``target`` trained on ``train`` (macro
    one-vs-rest over the classes the holdout has, for more than two)."""
    from sklearn.ensemble import HistGradientBoostingClassifier
    from sklearn.metrics import roc_auc_score

    features = [c for c in train.columns if c != target]
    y_train = train[target].astype(str).to_numpy()
    y_test = test[target].astype(str).to_numpy()
    classes = sorted(set(y_test))
    if len(set(y_train)) < 2:
        return 0.5  # a one-class synthetic target carries no signal
    model = HistGradientBoostingClassifier(categorical_features="from_dtype", random_state=0)
    model.fit(as_features(train[features]), y_train)
    p = model.predict_proba(as_features(test[features]))
    known = list(model.classes_)
    scores = []
    for c in classes if len(classes) > 2 else classes[-1:]:
        score = p[:, known.index(c)] if c in known else np.zeros(len(test))
        scores.append(roc_auc_score(y_test == c, score))
    return float(np.mean(scores))


# ---------------------------------------------------------------------------- runs

def run_ours(table: Table, eps: float, seed: int) -> dict:
    """One release of the default synthesizer, as a user runs it."""
    work = Path(tempfile.mkdtemp(prefix="tables-bench-"))
    try:
        out = work / "release"
        config = RunConfig(input=str(table.train_file), schema_file=str(
            ROOT / "schemas" / table.data.schema), out=str(out), epsilon=eps,
            rows=len(table.train), seed=seed, ledger=str(work / "ledger.db"))
        t = time.perf_counter()
        try:
            result = run_release(config)
            published, folder = True, Path(result.release)
            failed: list[str] = []
        except ValidationFailed as exc:
            published, folder = False, quarantine_dir(out)
            failed = list(exc.outcome.failed)
        seconds = time.perf_counter() - t
        synthetic = table.typed(pd.read_parquet(folder / DATA_FILE))
        return {"synthesizer": "ours", "name": DEFAULT_SYNTHESIZER, "published": published,
                "failed_checks": failed, "seconds": round(seconds, 2),
                **table.evaluate(synthetic)}
    finally:
        shutil.rmtree(work, ignore_errors=True)


def run_independent(table: Table, eps: float, seed: int) -> dict:
    t = time.perf_counter()
    model = make_synthesizer("dp-independent", seed=seed).fit(
        table.train, table.schema, PrivacyBudget(eps, DELTA))
    synthetic = model.sample(len(table.train), seed=seed)
    seconds = time.perf_counter() - t
    return {"synthesizer": "independent", "name": "dp-independent",
            "seconds": round(seconds, 2), **table.evaluate(synthetic)}


@contextlib.contextmanager
def _global_seed(seed: int):
    """The reference mechanisms draw from numpy's global generator."""
    state = np.random.get_state()
    np.random.seed(seed)
    try:
        yield
    finally:
        np.random.set_state(state)


def run_pgm(table: Table, which: str, eps: float, seed: int, pgm: Path, aim_size: float,
            aim_iters: int) -> dict:
    """Private-PGM's reference MST or AIM on the 20-bin codes, decoded in the same bins."""
    if str(pgm / "mechanisms") not in sys.path:  # once, not once per run
        sys.path.insert(0, str(pgm / "mechanisms"))
    import mbi

    names = table.schema.names  # the encoder's columns (identifiers are not among them)
    sizes = table.binning.sizes
    domain = mbi.Domain(names, sizes)
    data = mbi.Dataset(pd.DataFrame(table.real_codes, columns=names), domain)
    t = time.perf_counter()
    with _global_seed(seed), contextlib.redirect_stdout(sys.stderr):
        if which == "mst":
            from mst import MST

            synth = MST(data, eps, DELTA)
        else:
            from aim import AIM

            workload = [(pair, 1.0) for pair in itertools.combinations(names, 2)]
            mech = AIM(eps, DELTA, max_model_size=aim_size, max_iters=aim_iters)
            _, synth = mech.run(data, workload, num_synth_rows=len(table.train))
    codes = synth.df[names].to_numpy().astype("int64")
    synthetic = table.binning.decode(codes, np.random.default_rng(seed))
    seconds = time.perf_counter() - t
    params = {"max_model_size": aim_size, "max_iters": aim_iters} if which == "aim" else {}
    return {"synthesizer": which, "name": f"Private-PGM {which.upper()}", "params": params,
            "seconds": round(seconds, 2), **table.evaluate(table.typed(synthetic))}


# ---------------------------------------------------------------------------- scaling

def scaling_table(rng: np.random.Generator) -> tuple[pd.DataFrame, list[dict]]:
    """50,000 rows x 100 columns: caravan's 86, then adult's first 14, each set's rows drawn
    with replacement on its own; and the columns' declarations (roles dropped)."""
    import yaml

    parts, columns = [], []
    for data in (DATASETS["caravan"], DATASETS["adult"]):
        raw = yaml.safe_load((ROOT / "schemas" / data.schema).read_text())
        frame = ingest(DATASETS_DIR / data.files[0],
                       load_schema(ROOT / "schemas" / data.schema)).frame
        kept = [{k: v for k, v in c.items() if k != "role"} for c in raw["columns"]
                if c.get("role") != "identifier"]
        rows = rng.integers(0, len(frame), SCALING_ROWS)
        parts.append(frame.iloc[rows].reset_index(drop=True)[[c["name"] for c in kept]])
        columns += kept
    columns = columns[:max(SCALING_COLUMNS)]
    return pd.concat(parts, axis=1)[[c["name"] for c in columns]], columns


def run_scaling(widths: tuple[int, ...], eps: float = 1.0) -> Iterator[dict]:
    """Fit and sample seconds of the default synthesizer on the first k columns, one record
    per width as it finishes."""
    from schemas.parse import schema_from_dict

    frame, columns = scaling_table(np.random.default_rng(0))
    for k in widths:
        schema = schema_from_dict({"name": f"scaling-{k}", "version": "1",
                                   "columns": columns[:k]}, "scaling")
        t = time.perf_counter()
        model = make_synthesizer(DEFAULT_SYNTHESIZER, seed=0).fit(
            frame[schema.names], schema, PrivacyBudget(eps, DELTA))
        fit_s = time.perf_counter() - t
        t = time.perf_counter()
        model.sample(SCALING_ROWS, seed=0)
        sample_s = time.perf_counter() - t
        record = {"columns": k, "rows": SCALING_ROWS, "epsilon": eps,
                  "fit_s": round(fit_s, 1), "sample_s": round(sample_s, 1),
                  "synthesizer": DEFAULT_SYNTHESIZER}
        print(json.dumps(record), flush=True)
        yield record


# ---------------------------------------------------------------------------- results

def _key(r: dict) -> tuple:
    return (r.get("kind", "fidelity"), r.get("data"), r["synthesizer"], r.get("epsilon"),
            r.get("seed"), r.get("columns"))


def merge(path: Path, new: list[dict]) -> list[dict]:
    old = json.loads(path.read_text())["runs"] if path.exists() else []
    keys = {_key(r) for r in new}
    runs = [r for r in old if _key(r) not in keys] + new
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({"runs": runs}, indent=1) + "\n")
    return runs


def render(records: list[dict]) -> str:
    fidelity = [r for r in records if r.get("kind", "fidelity") == "fidelity"]
    lines = []
    for name, data in DATASETS.items():
        rows = [r for r in fidelity if r["data"] == name]
        if not rows:
            continue
        n = rows[0].get("n_train")
        role = "defaults decided on it" if data.role == "decided" else "a check, not tuned on"
        lines += [f"**{name}** ({n:,} training rows, {rows[0].get('n_columns')} columns; "
                  f"{role})",
                  "",
                  "| epsilon | synthesizer | runs | published | TSTR AUROC | 2-way TVD | "
                  "3-way L1 | pMSE | s |", "|---|---|---|---|---|---|---|---|---|"]
        groups: dict[tuple, list[dict]] = {}
        for r in rows:
            groups.setdefault((r["epsilon"], SYNTHESIZERS.index(r["synthesizer"])), []).append(r)
        for (eps, i), group in sorted(groups.items()):
            pub = [r for r in group if "published" in r]
            published = f"{sum(r['published'] for r in pub)} of {len(pub)}" if pub else "-"
            lines.append(
                f"| {eps:g} | {SYNTHESIZERS[i]} | {len(group)} | {published} | "
                f"{_stat([r['tstr'] for r in group], 3)} | "
                f"{_stat([r['tvd_2way'] for r in group], 3)} | "
                f"{_stat([r['l1_3way'] for r in group], 3)} | "
                f"{_stat([r['pmse'] for r in group], 4)} | "
                f"{_stat([r['seconds'] for r in group], 0)} |")
        lines.append("")
    scaling = sorted((r for r in records if r.get("kind") == "scaling"),
                     key=lambda r: r["columns"])
    if scaling:
        lines += [f"**Column scaling** ({scaling[0]['synthesizer']}, epsilon "
                  f"{scaling[0]['epsilon']:g}, {scaling[0]['rows']:,} rows)", "",
                  "| columns | fit s | sample s | fit s per column |", "|---|---|---|---|"]
        for r in scaling:
            lines.append(f"| {r['columns']} | {r['fit_s']:.0f} | {r['sample_s']:.0f} | "
                         f"{r['fit_s'] / r['columns']:.1f} |")
        lines.append("")
    return "\n".join(lines).rstrip() + "\n"


# ---------------------------------------------------------------------------- main

def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", nargs="+", default=list(DATASETS), choices=list(DATASETS))
    parser.add_argument("--synthesizers", nargs="+", default=list(SYNTHESIZERS),
                        choices=SYNTHESIZERS)
    parser.add_argument("--epsilons", type=float, nargs="+", default=[1.0, 10.0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2, 3, 4])
    parser.add_argument("--pgm", type=Path, default=None,
                        help="a Private-PGM checkout (its mechanisms/ folder); needed for "
                             "mst and aim, which are skipped without it")
    parser.add_argument("--aim-size", type=float, default=1.0,
                        help="AIM's max_model_size in MB (the reference's default: 80)")
    parser.add_argument("--aim-iters", type=int, default=250,
                        help="AIM's mirror-descent iterations per round (reference: 1000)")
    parser.add_argument("--widths", type=int, nargs="+", default=list(SCALING_COLUMNS),
                        help="--scaling: the column counts timed (at most "
                             f"{max(SCALING_COLUMNS)})")
    parser.add_argument("--scaling", action="store_true",
                        help="time the default synthesizer on 15/30/60/100 columns instead")
    parser.add_argument("--smoke", action="store_true",
                        help="tiny run (300 rows, epsilon 1, seed 0); prints, writes nothing")
    parser.add_argument("--results-only", action="store_true")
    parser.add_argument("--results", type=Path, default=RESULTS)
    parser.add_argument("--markdown", type=Path, default=BENCHMARKS)
    args = parser.parse_args()
    logging.getLogger("prefect").setLevel(logging.WARNING)

    if args.results_only:
        text = render(json.loads(args.results.read_text())["runs"])
        print(text)
        write_markdown(args.markdown, text, BEGIN, END)
        return 0
    if args.scaling:
        widths = (15, 30) if args.smoke else tuple(args.widths)
        if max(widths) > max(SCALING_COLUMNS):
            parser.error(f"--widths: at most {max(SCALING_COLUMNS)} columns")
        for record in run_scaling(widths):  # merged as each width finishes
            if not args.smoke:
                text = render(merge(args.results, [{"kind": "scaling", **record}]))
                write_markdown(args.markdown, text, BEGIN, END)
        return 0

    names = [s for s in args.synthesizers if s not in ("mst", "aim") or args.pgm]
    if len(names) < len(args.synthesizers):
        print("note: mst and aim need --pgm (a Private-PGM checkout): skipped", file=sys.stderr)
    if args.smoke:
        args.epsilons, args.seeds = [1.0], [0]
    env = environment()
    failed, records = [], []
    work = Path(tempfile.mkdtemp(prefix="tables-data-"))
    try:
        for name in args.data:
            table = Table(DATASETS[name], work, rows=300 if args.smoke else None)
            common = {"kind": "fidelity", "data": name, "n_train": len(table.train),
                      "n_test": len(table.test), "n_columns": len(table.schema.names),
                      "delta": DELTA, "env": env}
            for synth, eps, seed in itertools.product(names, args.epsilons, args.seeds):
                try:
                    if synth == "ours":
                        record = run_ours(table, eps, seed)
                    elif synth == "independent":
                        record = run_independent(table, eps, seed)
                    else:
                        record = run_pgm(table, synth, eps, seed, args.pgm, args.aim_size,
                                         args.aim_iters)
                except Exception:  # keep a long grid going; fail at the end
                    traceback.print_exc()
                    failed.append((name, synth, eps, seed))
                    continue
                record = _jsonable({**common, **record, "epsilon": eps, "seed": seed})
                records.append(record)
                print(f"{name} {synth} eps={eps:g} seed={seed}: TSTR {record['tstr']:.3f}, "
                      f"TVD {record['tvd_2way']:.3f}, L1 {record['l1_3way']:.3f}, pMSE "
                      f"{record['pmse']:.4f}, {record['seconds']:.0f} s"
                      + (f", published {record['published']}" if "published" in record
                         else ""), flush=True)
                if not args.smoke:
                    merge(args.results, [record])
    finally:
        shutil.rmtree(work, ignore_errors=True)
    if args.smoke:
        print(render(records))
    elif records:
        text = render(json.loads(args.results.read_text())["runs"])
        print(text)
        write_markdown(args.markdown, text, BEGIN, END)
    if failed:
        print(f"failed: {failed}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
