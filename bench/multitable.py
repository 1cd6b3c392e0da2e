"""Cross-table fidelity of person-level DP multi-table releases on PBC (issue 26).

Data: data/pbc/pbc.csv.gz (418 patients) and data/pbc/pbcseq.csv.gz (1,945 follow-up visits
of 312 of them), schema schemas/pbc.yaml, read as a release reads them (ingest, keys read
to link rows). delta = 1e-9. At each epsilon and seed (a fresh fit per seed) a synthesizer
fits on both tables and releases 418 synthetic patients with their visits. Statistics of
the synthetic tables against the real ones:

  integrity     % of synthetic visit rows that are OK: their key is a patient's key, and
                their person's `day` sequence (their visits in day order) starts at 0,
                strictly increases (no two visits on one day), and stays <= the person's
                `futime` (the futime of their first visit). Target 100%
  rows TVD      total variation distance between the distributions of visits per patient
                (patients with 0 visits included)
  parent x rows mean over the patient columns status, trt, stage, edema, sex (numeric ones
                would be binned at the real quartiles; missing is one more state) of the TVD
                of the joint (column, visits bucket 0 / 1-3 / 4-6 / 7-9 / 10+) distribution
  trend mean    for each lab of visits (bili, albumin, protime, alk.phos, ast, platelet,
  trend sd      chol; log scale for bili, alk.phos, ast, chol), its mean (and its standard
                deviation) within bins of `day` (0, (0,400], (400,1000], (1000,2000],
                >2000); |real - synthetic| / the real lab's overall sd, averaged over labs
                and bins (a bin without synthetic rows is left out)
  last x status TVD of the joint (visits.status of the person, bili at their last visit in
                real quartiles) distribution, over patients with at least one visit
  KM gap        max |S_real(t) - S_syn(t)| between the Kaplan-Meier curves of the patient
                table (time, event = status 2; synth.survival's product-limit estimate),
                over every time; "t<=p90": up to the real 90th percentile time (3,524 days),
                where the real curve still rests on 10% of the patients (the tail beyond
                rests on a few: a synthetic curve whose last time is a death drops to 0
                there while the real one ends at 0.35, a gap of 0.35 whatever came before)
  fit s         wall seconds of fit; sample s: of sampling the 418 patients and their visits

Synthesizers:
  ours          synth.multitable.PersonMarginals (person-level DP: a person model and a visit
                model with contribution = the schema's cap of 16 visits per person)
  naive DP      each table alone with synth.marginals.DPMarginals (patients: 40% of the
                budget in zCDP; visits: 60%, contribution=16, so person-level DP too; the
                tables' schemas minus identifiers), 418 patients and as many visits as the
                real table (1,945), each visit attached to a uniformly random synthetic
                patient; no other repair
  HMA           SDV 2.0 HMASynthesizer, non-private, on the raw CSV frames (primary key id
                of patients, foreign key id of visits), fitted once (seed 0); benchmark
                only (SDV is BUSL: the `bench` extra, imported only here; skipped if absent)

Prints one markdown table per epsilon (mean ± sd over seeds) and the ratio ours / naive DP
per statistic; writes bench/results/multitable.json after every run (HMA first, then the
seeds in turn, each at every epsilon: a run cut short keeps a few seeds of each epsilon).
``--params`` sets DPMarginals options for ours and naive DP alike: at the defaults one fit
of ours takes about 12 minutes on a busy 2-core machine (components 1,024, 16 rounds per
column), so the grid of 15 fits per synthesizer is run with fewer (see the JSON's params).

    python bench/multitable.py                              # eps 1, 10, 100; 5 seeds; HMA
    python bench/multitable.py --epsilons 10 --seeds 2 --no-hma
    python bench/multitable.py --params '{"components": 256, "rounds_per_column": 4}'
    python bench/multitable.py --smoke                      # tiny models, writes nothing
"""

from __future__ import annotations

import os

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")  # see bench/fidelity.py

import argparse
import importlib.metadata
import json
import platform
import time
import warnings
from dataclasses import replace
from pathlib import Path

import numpy as np
import pandas as pd

from pipelines.ingest import ingest, read_identifiers
from schemas.relational import MultiTableSchema, load_multi_table_schema
from synth.marginals import DPMarginals
from synth.multitable import KEY, PersonMarginals
from synth.privacy import PrivacyBudget, zcdp_epsilon, zcdp_rho
from synth.survival import at_risk_time, kaplan_meier, max_gap

ROOT = Path(__file__).resolve().parents[1]
SCHEMA = ROOT / "schemas" / "pbc.yaml"
FILES = {"patients": ROOT / "data" / "pbc" / "pbc.csv.gz",
         "visits": ROOT / "data" / "pbc" / "pbcseq.csv.gz"}
RESULTS = ROOT / "bench" / "results" / "multitable.json"
DELTA = 1e-9
PERSON_SHARE = 0.4  # as PersonMarginals' default
SMOKE = {"components": 16, "rounds_per_column": 2, "iterations": 10, "members": 1}

PARENT_COLUMNS = ("status", "trt", "stage", "edema", "sex")
COUNT_EDGES = (0, 1, 4, 7, 10)  # buckets 0, 1-3, 4-6, 7-9, 10+
LABS = ("bili", "albumin", "protime", "alk.phos", "ast", "platelet", "chol")
LOG_LABS = {"bili", "alk.phos", "ast", "chol"}
DAY_BINS = ("0", "(0,400]", "(400,1000]", "(1000,2000]", ">2000")
STATS = ("integrity", "rows_tvd", "parent_rows_tvd", "trend_mean", "trend_sd",
         "last_status_tvd", "km_gap", "km_gap_p90")
HEADERS = {"integrity": "integrity %", "rows_tvd": "rows TVD",
           "parent_rows_tvd": "parent x rows TVD", "trend_mean": "trend mean",
           "trend_sd": "trend sd", "last_status_tvd": "last x status TVD",
           "km_gap": "KM gap", "km_gap_p90": "KM gap t<=p90"}


# ----------------------------------------------------------------------------- inputs

def load() -> tuple[MultiTableSchema, dict[str, pd.DataFrame]]:
    """The schema and every table as a release reads it: ingested, plus ``KEY``."""
    schema = load_multi_table_schema(SCHEMA)
    tables = {}
    for table in schema.names:
        own = schema.tables[table]
        frame = ingest(FILES[table], own).frame
        key = schema.key if table == schema.person else schema.children[table].key
        frame[KEY] = read_identifiers(FILES[table], own)[key].to_numpy()
        tables[table] = frame
    return schema, tables


def released(tables: dict[str, pd.DataFrame], schema: MultiTableSchema
             ) -> dict[str, pd.DataFrame]:
    """The real tables in the shape of a release: each table's key column, then its columns."""
    out = {}
    for table, frame in tables.items():
        key = schema.key if table == schema.person else schema.children[table].key
        out[table] = frame.rename(columns={KEY: key})[[key, *schema.tables[table].names]]
    return out


def normalised(tables: dict[str, pd.DataFrame], schema: MultiTableSchema
               ) -> dict[str, pd.DataFrame]:
    """Every synthesizer's output in one form: keys and categories as text (missing: NaN),
    numbers as float."""
    out = {}
    for table, frame in tables.items():
        key = schema.key if table == schema.person else schema.children[table].key
        data = {key: frame[key].astype(str).to_numpy()}
        for column in schema.tables[table].columns:
            values = frame[column.name]
            if column.kind == "categorical":
                text = values.astype(object)
                data[column.name] = np.where(pd.isna(text), np.nan,
                                             text.map(_category_text)).astype(object)
            else:
                data[column.name] = pd.to_numeric(values, errors="coerce").astype("float64")
        out[table] = pd.DataFrame(data)
    return out


def _category_text(value) -> str:
    """"2", 2 and 2.0 are the category "2"; "0.5" stays."""
    if isinstance(value, (int, float, np.integer, np.floating)) and float(value).is_integer():
        return str(int(value))
    return str(value)


# ----------------------------------------------------------------------------- statistics

def tvd(a: pd.Series, b: pd.Series) -> float:
    """Total variation distance between the distributions of two series (NaN is a state)."""
    p = a.fillna("<NA>").astype(str).value_counts(normalize=True)
    q = b.fillna("<NA>").astype(str).value_counts(normalize=True)
    return 0.5 * float(p.sub(q, fill_value=0).abs().sum())


def visit_counts(tables: dict[str, pd.DataFrame]) -> pd.Series:
    """Visits per patient (0 for patients without visits), indexed by patient key."""
    keys = tables["patients"]["id"]
    return tables["visits"]["id"].value_counts().reindex(keys, fill_value=0).astype(int)


def count_bucket(counts: pd.Series) -> pd.Series:
    labels = np.array(["0", "1-3", "4-6", "7-9", "10+"])
    return pd.Series(labels[np.searchsorted(COUNT_EDGES, counts.to_numpy(), side="right") - 1],
                     index=counts.index)


def quartile_bins(values: pd.Series, edges: np.ndarray) -> pd.Series:
    """Quartile bucket (Q1..Q4) of each value at the real ``edges``; missing stays NaN."""
    codes = np.searchsorted(edges, values.to_numpy(dtype="float64"), side="right")
    labels = pd.Series([f"Q{c + 1}" for c in codes], index=values.index, dtype=object)
    return labels.where(values.notna().to_numpy(), np.nan)


def integrity(tables: dict[str, pd.DataFrame]) -> dict:
    """Shares of visit rows linked, first at 0, increasing, within follow-up, and all OK."""
    keys = set(tables["patients"]["id"])
    visits = tables["visits"].sort_values(["id", "day"], kind="stable")  # in day order
    if not len(visits):
        return {"integrity": float("nan")}
    owner = visits["id"].to_numpy()
    day = visits["day"].to_numpy(dtype="float64")
    linked = np.isin(owner, list(keys))
    previous = visits["day"].groupby(owner, sort=False).shift(1).to_numpy(dtype="float64")
    first = np.isnan(previous)
    starts = ~first | (day == 0)
    increasing = first | (day > previous)
    futime = visits["futime"].groupby(owner, sort=False).transform("first").to_numpy(
        dtype="float64")
    within = day <= futime
    ok = linked & starts & increasing & within
    return {"integrity": 100 * ok.mean(), "linked": 100 * linked.mean(),
            "first_at_0": 100 * starts.mean(), "increasing": 100 * increasing.mean(),
            "within_futime": 100 * within.mean()}


def parent_rows(real: dict[str, pd.DataFrame], syn: dict[str, pd.DataFrame]) -> dict:
    joint = {}
    buckets = {n: count_bucket(visit_counts(t)) for n, t in (("real", real), ("syn", syn))}
    for name in PARENT_COLUMNS:
        columns = {}
        for which, tables in (("real", real), ("syn", syn)):
            values = tables["patients"].set_index("id")[name]
            if pd.api.types.is_float_dtype(values):
                edges = np.nanquantile(real["patients"][name].to_numpy(float), [.25, .5, .75])
                values = quartile_bins(values, edges)
            columns[which] = values.fillna("<NA>").astype(str) + " | " + \
                buckets[which].reindex(values.index).to_numpy()
        joint[name] = tvd(columns["real"], columns["syn"])
    return {"parent_rows_tvd": float(np.mean(list(joint.values()))), "parent_rows_by": joint}


def day_bin(day: pd.Series) -> pd.Series:
    d = day.to_numpy(dtype="float64")
    index = np.select([d <= 0, d <= 400, d <= 1000, d <= 2000, d > 2000], range(5), -1)
    return pd.Series(np.where(index >= 0, np.array(DAY_BINS)[np.maximum(index, 0)], None),
                     index=day.index)


def trends(real: pd.DataFrame, syn: pd.DataFrame) -> dict:
    """Per lab and day bin, |mean_real - mean_syn| and |sd_real - sd_syn| over the real sd."""
    out = {}
    means, sds = [], []
    for lab in LABS:
        frames = {}
        for which, visits in (("real", real), ("syn", syn)):
            values = visits[lab].astype("float64")
            if lab in LOG_LABS:
                values = np.log(values.where(values > 0))
            frames[which] = pd.DataFrame({"v": values, "bin": day_bin(visits["day"])})
        scale = float(frames["real"]["v"].std())
        stats = {w: f.dropna().groupby("bin")["v"].agg(["mean", "std"]).reindex(list(DAY_BINS))
                 for w, f in frames.items()}
        dm = ((stats["real"]["mean"] - stats["syn"]["mean"]).abs() / scale).to_numpy()
        ds = ((stats["real"]["std"] - stats["syn"]["std"]).abs() / scale).to_numpy()
        out[lab] = {"mean": _nanmean(dm), "sd": _nanmean(ds)}
        means.append(dm)
        sds.append(ds)
    return {"trend_mean": _nanmean(np.concatenate(means)),
            "trend_sd": _nanmean(np.concatenate(sds)), "trend_by_lab": out}


def _nanmean(values: np.ndarray) -> float:
    values = np.asarray(values, dtype="float64")
    return float(np.nanmean(values)) if np.isfinite(values).any() else float("nan")


def last_visit(tables: dict[str, pd.DataFrame]) -> pd.DataFrame:
    """Each linked patient's visit with the largest day (the later row on ties)."""
    visits = tables["visits"]
    visits = visits[visits["id"].isin(set(tables["patients"]["id"]))]
    order = visits.assign(__row__=np.arange(len(visits))).sort_values(
        ["id", "day", "__row__"], kind="stable")
    return order.groupby("id", sort=False).tail(1)


def last_status(real: dict[str, pd.DataFrame], syn: dict[str, pd.DataFrame]) -> float:
    real_last, syn_last = last_visit(real), last_visit(syn)
    edges = np.nanquantile(real_last["bili"].to_numpy(float), [.25, .5, .75])

    def joint(last):
        return last["status"].fillna("<NA>").astype(str) + " | " + \
            quartile_bins(last["bili"], edges).fillna("<NA>").astype(str)

    return tvd(joint(real_last), joint(syn_last)) if len(syn_last) else float("nan")


def km_gaps(real: pd.DataFrame, syn: pd.DataFrame) -> dict:
    """Largest |S_real - S_syn| over every time, and up to the real 90th percentile time."""
    def curve(patients):
        known = patients["time"].notna()
        return kaplan_meier(patients["time"][known].to_numpy(float),
                            (patients["status"][known] == "2").to_numpy())

    until = at_risk_time(real["time"].dropna().to_numpy(float), 0.1)
    a, b = curve(real), curve(syn)
    return {"km_gap": max_gap(a, b), "km_gap_p90": max_gap(a, b, until), "km_until": until}


def statistics(real: dict[str, pd.DataFrame], syn: dict[str, pd.DataFrame]) -> dict:
    out = integrity(syn)
    out["rows_tvd"] = tvd(visit_counts(real), visit_counts(syn))
    out.update(parent_rows(real, syn))
    out.update(trends(real["visits"], syn["visits"]))
    out["last_status_tvd"] = last_status(real, syn)
    out.update(km_gaps(real["patients"], syn["patients"]))
    out["persons"] = len(syn["patients"])
    out["visits"] = len(syn["visits"])
    return out


# ----------------------------------------------------------------------------- synthesizers

def run_ours(schema, tables, eps: float, seed: int, params: dict
             ) -> tuple[dict, float, float]:
    start = time.perf_counter()
    model = PersonMarginals(person_share=PERSON_SHARE, seed=seed, **params).fit(
        tables, schema, PrivacyBudget(eps, DELTA))
    fit_s = time.perf_counter() - start
    assert model.privacy_.epsilon <= eps * (1 + 1e-9)
    start = time.perf_counter()
    synthetic = model.sample(len(tables[schema.person]), seed=seed)
    return synthetic, fit_s, time.perf_counter() - start


def run_naive(schema, tables, eps: float, seed: int, params: dict
              ) -> tuple[dict, float, float]:
    """Each table alone (person-level DP through contribution=cap for visits), then each
    synthetic visit given a uniformly random synthetic patient."""
    budget = PrivacyBudget(eps, DELTA)
    rho = zcdp_rho(budget) * (1 - 1e-6)
    shares = {schema.person: PERSON_SHARE} | {
        c: (1 - PERSON_SHARE) / len(schema.children) for c in schema.children}
    rng = np.random.default_rng(seed)
    out, fit_s, sample_s, spent = {}, 0.0, 0.0, 0.0
    for table in schema.names:
        own = replace(schema.tables[table], identifiers=(), order=())
        cap = 1 if table == schema.person else schema.children[table].cap
        part = PrivacyBudget(zcdp_epsilon(rho * shares[table], DELTA), DELTA)
        start = time.perf_counter()
        model = DPMarginals(seed=seed, contribution=cap, **params).fit(
            tables[table][own.names], own, part)
        fit_s += time.perf_counter() - start
        spent += model.rho_spent_
        start = time.perf_counter()
        out[table] = model.sample(len(tables[table]), seed=seed)
        sample_s += time.perf_counter() - start
    assert zcdp_epsilon(spent, DELTA) <= eps * (1 + 1e-9)
    n = len(out[schema.person])
    keys = pd.Series([f"{schema.person}-{i:06d}" for i in range(1, n + 1)])
    out[schema.person].insert(0, schema.key, keys)
    for table, child in schema.children.items():
        frame = out[table]
        frame.insert(0, child.key, keys.to_numpy()[rng.integers(0, n, len(frame))])
    return out, fit_s, sample_s


def run_hma(schema: MultiTableSchema, seed: int = 0
            ) -> tuple[dict, float, float, str] | None:
    """SDV 2.0's non-private HMASynthesizer on the raw CSV frames; None without SDV."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            from sdv.metadata import Metadata
            from sdv.multi_table import HMASynthesizer
    except ImportError as error:
        print(f"skipped HMA: SDV is not installed ({error}); install the benchmark-only "
              "extra: .venv/bin/pip install -e '.[bench]'", flush=True)
        return None
    raw, spec = {}, {}
    for table in schema.names:
        own = schema.tables[table]
        text = [c.name for c in own.columns if c.kind == "categorical"]
        frame = pd.read_csv(FILES[table], dtype={**{c: str for c in text}, "id": str})
        raw[table] = frame[["id", *own.names]]
        columns = {"id": {"sdtype": "id"}} | {c.name: _sdtype(c) for c in own.columns}
        spec[table] = {"columns": columns} | (
            {"primary_key": "id"} if table == schema.person else {})
    metadata = Metadata.load_from_dict({
        "METADATA_SPEC_VERSION": "V2", "tables": spec,
        "relationships": [{"parent_table_name": schema.person, "parent_primary_key": "id",
                           "child_table_name": table, "child_foreign_key": child.key}
                          for table, child in schema.children.items()]})
    state = np.random.get_state()
    np.random.seed(seed)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            start = time.perf_counter()
            model = HMASynthesizer(metadata, verbose=False)
            model.fit(raw)
            fit_s = time.perf_counter() - start
            start = time.perf_counter()
            synthetic = model.sample_scale(scale=1.0)  # as many patients as the real table
            sample_s = time.perf_counter() - start
    finally:
        np.random.set_state(state)
    return synthetic, fit_s, sample_s, importlib.metadata.version("sdv")


def _sdtype(column) -> dict:
    """SDV 2.0 column metadata from the schema alone (declared bounds and categories, as
    bench/fidelity.py: never detected from the rows)."""
    meta: dict = {"range_is_nullable": column.nullable}
    if column.kind == "categorical":
        return meta | {"sdtype": "categorical", "range_values": list(column.categories)}
    meta.update(sdtype="numerical", range_min=float(column.minimum),
                range_max=float(column.maximum))
    return meta | ({"decimal_places": 0} if column.kind == "integer" else {})


# ----------------------------------------------------------------------------- report

def summary(rows: list[dict], name: str, eps: float | None) -> dict:
    chosen = [r for r in rows if r["synthesizer"] == name and
              (eps is None or r["epsilon"] == eps)]
    out = {"seeds": len(chosen)}
    for stat in (*STATS, "fit_s", "sample_s"):
        values = np.array([r[stat] for r in chosen], dtype="float64")
        out[stat] = (float(np.nanmean(values)), float(np.nanstd(values))) if len(values) \
            else (float("nan"), float("nan"))
    return out


def render(rows: list[dict], epsilons: list[float]) -> str:
    lines = []
    fmt = {"integrity": 1, "fit_s": 1, "sample_s": 1}
    hma = summary(rows, "HMA (non-private)", None) if any(
        r["synthesizer"].startswith("HMA") for r in rows) else None
    for eps in epsilons:
        lines += [f"### pbc, epsilon {eps:g} (delta {DELTA:g})", "",
                  "| synthesizer | seeds | " + " | ".join(HEADERS.values()) +
                  " | fit s | sample s |", "|---|---|" + "---|" * (len(STATS) + 2)]
        table = [("ours (PersonMarginals)", summary(rows, "ours", eps)),
                 ("naive DP", summary(rows, "naive DP", eps))]
        if hma is not None:
            table.append(("HMA (non-private, once)", hma))
        for label, s in table:
            cells = []
            for stat in (*STATS, "fit_s", "sample_s"):
                mean, sd = s[stat]
                d = fmt.get(stat, 3)
                cells.append(f"{mean:.{d}f}" + (f" ± {sd:.{d}f}" if s["seeds"] > 1 else ""))
            lines.append(f"| {label} | {s['seeds']} | " + " | ".join(cells) + " |")
        ours, naive = table[0][1], table[1][1]
        ratios = [f"{HEADERS[s]} {ours[s][0] / naive[s][0]:.2f}" if naive[s][0] else
                  f"{HEADERS[s]} -" for s in STATS]
        lines += ["", "ours / naive DP (integrity: higher is better; the rest: lower is "
                  "better): " + ", ".join(ratios), ""]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epsilons", nargs="*", type=float, default=[1.0, 10.0, 100.0])
    parser.add_argument("--seeds", type=int, default=5, help="fits per epsilon (seeds 0..)")
    parser.add_argument("--no-hma", action="store_true", help="skip the SDV HMA baseline")
    parser.add_argument("--smoke", action="store_true",
                        help="one epsilon, one seed, tiny models, no HMA; writes nothing")
    parser.add_argument("--params", type=json.loads, default={},
                        help='DPMarginals settings of ours and naive DP alike, as JSON, e.g. '
                        '\'{"components": 256}\' (default: DPMarginals defaults)')
    parser.add_argument("--out", type=Path, default=RESULTS, help="the JSON written")
    args = parser.parse_args(argv)
    params: dict = dict(args.params)
    if args.smoke:
        args.epsilons, args.seeds, args.no_hma, params = args.epsilons[:1], 1, True, SMOKE
    schema, tables = load()
    real = normalised(released(tables, schema), schema)
    real_check = integrity(real)
    print(f"real tables: {len(real['patients'])} patients, {len(real['visits'])} visits, "
          f"integrity {real_check['integrity']:.1f}%", flush=True)
    result = {"machine": f"{platform.machine()}, {os.cpu_count()} CPU threads",
              "delta": DELTA, "params": params or "DPMarginals defaults",
              "epsilons": args.epsilons, "seeds": args.seeds,
              "person_share": PERSON_SHARE, "sdv": None, "real_integrity": real_check,
              "commit": _commit(), "rows": []}
    rows = result["rows"]

    def save() -> None:  # after every run: a cut-short run keeps what it measured
        if not args.smoke:
            args.out.parent.mkdir(parents=True, exist_ok=True)
            args.out.write_text(json.dumps(result, indent=2, default=_json) + "\n")

    if not args.no_hma:
        done = run_hma(schema)
        if done is not None:
            synthetic, fit_s, sample_s, result["sdv"] = done
            stats = statistics(real, normalised(synthetic, schema))
            rows.append({"synthesizer": "HMA (non-private)", "epsilon": None, "seed": 0,
                         "fit_s": fit_s, "sample_s": sample_s, **stats})
            print(f"HMA: fit {fit_s:.1f}s, integrity {stats['integrity']:.1f}%", flush=True)
            save()
    for seed in range(args.seeds):  # seeds outermost: every epsilon gains a seed per pass
        for eps in args.epsilons:
            for name, run in (("ours", run_ours), ("naive DP", run_naive)):
                synthetic, fit_s, sample_s = run(schema, tables, eps, seed, params)
                stats = statistics(real, normalised(synthetic, schema))
                rows.append({"synthesizer": name, "epsilon": eps, "seed": seed,
                             "fit_s": fit_s, "sample_s": sample_s, **stats})
                print(f"eps {eps:g} seed {seed} {name}: fit {fit_s:.1f}s, integrity "
                      f"{stats['integrity']:.1f}%, rows TVD {stats['rows_tvd']:.3f}, KM gap "
                      f"{stats['km_gap']:.3f}", flush=True)
                save()
    print()
    print(render(rows, args.epsilons))
    return result


def _commit() -> str | None:
    """The commit the synthesizers ran from (and whether the tree had changes)."""
    import subprocess

    try:
        head = subprocess.run(["git", "-C", str(ROOT), "rev-parse", "HEAD"], capture_output=True,
                              text=True, timeout=10).stdout.strip()
        dirty = subprocess.run(["git", "-C", str(ROOT), "status", "--porcelain", "synth"],
                               capture_output=True, text=True, timeout=10).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        head, dirty = "", ""
    if not head:  # not a git checkout (an exported snapshot): as the caller says
        return os.environ.get("BENCH_COMMIT")
    return head + (" (synth/ modified)" if dirty else "")


def _json(value):
    if isinstance(value, (np.floating, np.integer)):
        return value.item()
    raise TypeError(type(value).__name__)


if __name__ == "__main__":
    main()
