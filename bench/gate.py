"""The release gate and the holdout on UCI Adult: the default synthesizer through the whole
release pipeline (``pipelines.recipe.run_release``), beside the direct fits of bench/fidelity.py.

Each (epsilon, seed) is one release of ``dp-marginals`` (the default synthesizer, default
settings) from adult.data (32,561 rows, ../shared/datasets/adult, else the bundled copy) with
schema schemas/adult.yaml, delta = 1e-9 (the run's default), 40,000 rows published, the DP
noise and the holdout key drawn afresh from the operating system (``noise_seed`` left empty),
into a fresh temporary release folder and budget ledger. The run holds out a secret random
10% of the records from training (``pipelines.holdout``), so it trains on about 90% of them;
bench/fidelity.py trains on all of them.

Recorded per release:

  gate           published, or quarantined (``ValidationFailed``); the gate's summary line,
                 or the failed checks
  measured       how many of the measured-marginal checks (the release against the noisy
                 marginals the synthesizer measured under DP) ran, and how many failed
  fidelity suite the advisory checks against the real training rows (internal): passed of run
  run s          wall seconds of the whole run_release call (ingest, fit, sample, gate,
                 advisory checks, publishing)
  metrics        the released (or quarantined) data.parquet scored with bench/fidelity.py's
                 Bench: TSTR AUROC on adult.test, 2-way TVD and 3-way L1 against all of
                 adult.data in its bins, SDMetrics quality and pMSE

``--holdout 0`` runs the same releases with no record held out (all of them train, as in
bench/fidelity.py): a control that tells the holdout's cost from the pipeline's.

Records merge into bench/results/gate.json by (holdout, epsilon, seed) as each run
finishes; the table beside the dp-marginals rows of bench/results/fidelity.json is printed
at the end (or alone with --results-only).

    python bench/gate.py                         # 3 epsilons x 3 seeds (about an hour)
    python bench/gate.py --epsilons 10 --seeds 2
    python bench/gate.py --epsilons 1 10 --holdout 0   # the control
    python bench/gate.py --results-only          # print the table
    python bench/gate.py --small                 # smoke run, writes nothing
"""

from __future__ import annotations

import os

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")  # see bench/fidelity.py

import argparse
import gzip
import json
import logging
import shutil
import sys
import tempfile
import time
import traceback
from pathlib import Path

import pandas as pd

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.fidelity import ROWS, Bench, _jsonable, _stat, adult_file, environment  # noqa: E402
from pipelines.config import DEFAULT_SYNTHESIZER, RunConfig  # noqa: E402
from pipelines.ingest import ingest  # noqa: E402
from pipelines.plan import FIDELITY_FILE, VALIDATION_FILE, internal_dir, quarantine_dir  # noqa: E402
from pipelines.publish import DATA_FILE  # noqa: E402
from pipelines.recipe import run_release  # noqa: E402
from pipelines.validate import ValidationFailed  # noqa: E402
from schemas import load_schema, pandas_dtype  # noqa: E402

SCHEMA = ROOT / "schemas" / "adult.yaml"
RESULTS = ROOT / "bench" / "results" / "gate.json"
FIDELITY_RESULTS = ROOT / "bench" / "results" / "fidelity.json"
SMALL_ROWS = 2_000
HOLDOUT = RunConfig.model_fields["holdout"].default  # the run's default share held out


def counts(outcome) -> dict | None:
    """{"evaluated", "failed"} of a ValidationOutcome or of its JSON document."""
    if outcome is None:
        return None
    if isinstance(outcome, dict):
        return {"evaluated": int(outcome["evaluated"]), "failed": len(outcome["failed"])}
    return {"evaluated": outcome.evaluated, "failed": len(outcome.failed)}


def _passed(c: dict | None) -> str:
    return "-" if not c else f"{c['evaluated'] - c['failed']} of {c['evaluated']}"


def release_once(bench: Bench, source: Path, eps: float, seed: int, rows: int,
                 holdout: float = HOLDOUT) -> dict:
    """One run_release into a temporary folder and ledger; the gate's outcome and the bench
    metrics of the rows it published or quarantined."""
    work = Path(tempfile.mkdtemp(prefix="gate-bench-"))
    try:
        out = work / "release"
        config = RunConfig(input=str(source), schema_file=str(SCHEMA), out=str(out),
                           epsilon=eps, rows=rows, seed=seed, ledger=str(work / "ledger.db"),
                           holdout=holdout)
        t = time.perf_counter()
        try:
            result = run_release(config)
            published, folder, verdict = True, Path(result.release), result.verdict
            gate = verdict.summary()
            failed_checks: list[str] = []
        except ValidationFailed as exc:
            published, folder, verdict = False, quarantine_dir(out), None
            gate, failed_checks = str(exc), list(exc.outcome.failed)
        run_s = time.perf_counter() - t
        if verdict is not None:
            measured, fidelity = counts(verdict.measured), counts(verdict.fidelity)
            audit = verdict.audit.to_dict() if verdict.audit is not None else None
        else:  # quarantined: what the run wrote beside the rows
            doc = json.loads((folder / VALIDATION_FILE).read_text())
            measured = counts(doc.get("measured_marginals"))
            path = internal_dir(out) / FIDELITY_FILE
            fidelity = counts(json.loads(path.read_text())) if path.exists() else None
            audit = None
        frame = pd.read_parquet(folder / DATA_FILE)
        schema = bench.schema
        synthetic = frame[schema.names].astype({c.name: pandas_dtype(c)
                                                for c in schema.columns})
        metrics = bench.evaluate(synthetic)
        metrics["seconds"]["run"] = round(run_s, 3)
        return {"synthesizer": DEFAULT_SYNTHESIZER, "epsilon": eps, "delta": config.delta,
                "seed": seed, "holdout": config.holdout, "published": published,
                "gate": gate, "failed_checks": failed_checks, "measured": measured,
                "fidelity_suite": fidelity, "audit": _jsonable(audit),
                "n_synthetic": len(synthetic), **metrics}
    finally:
        shutil.rmtree(work, ignore_errors=True)


# ---------------------------------------------------------------------------- results

def merge(path: Path, new: list[dict]) -> list[dict]:
    """Records of ``path`` with ``new`` ones replacing those of the same (holdout, epsilon,
    seed)."""
    old = json.loads(path.read_text())["runs"] if path.exists() else []
    keys = {_key(r) for r in new}
    records = sorted([r for r in old if _key(r) not in keys] + new, key=_key)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps({"benchmark": "release gate and holdout on UCI Adult "
                                            "(run_release, dp-marginals)",
                               "runs": records}, indent=1) + "\n")
    tmp.replace(path)
    return records


def _key(r: dict) -> tuple:
    return -r.get("holdout", 0.0), r["epsilon"], r["seed"]


def _groups(records: list[dict]) -> dict[tuple, list[dict]]:
    """(holdout, epsilon) -> records, the default holdout first."""
    out: dict[tuple, list[dict]] = {}
    for r in sorted(records, key=_key):
        out.setdefault((r.get("holdout"), r["epsilon"]), []).append(r)
    return out


def table(records: list[dict], reference: list[dict]) -> str:
    """Markdown: the pipeline's releases per epsilon, then bench/fidelity.py's direct fits of
    dp-marginals (mean ± sample standard deviation over seeds)."""
    head = ["path", "epsilon", "seeds", "published", "measured checks passed",
            "fidelity suite passed", "TSTR AUROC", "2-way TVD", "3-way L1", "run s"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for (holdout, eps), rs in _groups(records).items():
        done = [r["measured"] for r in rs if r["measured"]]
        measured = (f"{sum(m['evaluated'] - m['failed'] for m in done)} of "
                    f"{sum(m['evaluated'] for m in done)}" if done else "-")
        suites = [r["fidelity_suite"] for r in rs if r["fidelity_suite"]]
        suite = (f"{sum(s['evaluated'] - s['failed'] for s in suites)} of "
                 f"{sum(s['evaluated'] for s in suites)}" if suites else "-")
        published = sum(r["published"] for r in rs)
        lines.append("| " + " | ".join([
            f"run_release, holdout {holdout:g}", f"{eps:g}", str(len(rs)),
            f"{published} of {len(rs)}", measured, suite,
            _stat([r["tstr_auroc"] for r in rs], 3), _stat([r["tvd_2way"] for r in rs], 3),
            _stat([r["l1_3way"] for r in rs], 3),
            _stat([r["seconds"]["run"] for r in rs], 1)]) + " |")
    for (_, eps), rs in _groups(reference).items():
        lines.append("| " + " | ".join([
            "bench/fidelity.py (fit + sample)", f"{eps:g}", str(len(rs)), "-", "-", "-",
            _stat([r["tstr_auroc"] for r in rs], 3), _stat([r["tvd_2way"] for r in rs], 3),
            _stat([r["l1_3way"] for r in rs], 3),
            _stat([r["seconds"]["fit"] + r["seconds"]["sample"] for r in rs], 1)]) + " |")
    return "\n".join(lines)


def reference_rows(path: Path = FIDELITY_RESULTS) -> list[dict]:
    """The dp-marginals rows of bench/fidelity.py's results."""
    if not path.exists():
        return []
    return [r for r in json.loads(path.read_text())["runs"]
            if r["synthesizer"] == DEFAULT_SYNTHESIZER]


# ---------------------------------------------------------------------------- main

def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epsilons", type=float, nargs="+", default=[0.1, 1.0, 10.0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--rows", type=int, default=ROWS, help="rows published per release")
    parser.add_argument("--holdout", type=float, default=HOLDOUT,
                        help=f"share of the records held out of training (default: the "
                             f"run's default, {HOLDOUT:g}; 0 trains on all of them, as "
                             f"bench/fidelity.py does)")
    parser.add_argument("--small", action="store_true",
                        help=f"smoke run: one release of {SMALL_ROWS:,} rows from the first "
                             f"{SMALL_ROWS:,} records at epsilon 1, seed 0; writes nothing")
    parser.add_argument("--results-only", action="store_true",
                        help="print the table from the results JSON; run nothing")
    parser.add_argument("--results", type=Path, default=RESULTS)
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")

    if args.results_only:
        if not args.results.exists():
            parser.error(f"{args.results} does not exist yet: run the benchmark first")
        print(table(json.loads(args.results.read_text())["runs"], reference_rows()))
        return 0

    schema = load_schema(SCHEMA)
    source = adult_file("adult.data")
    train = ingest(source, schema).frame
    test = ingest(adult_file("adult.test"), schema).frame
    scratch = None
    if args.small:
        # the first records of the file, in its own format, as the run's input
        scratch = Path(tempfile.mkdtemp(prefix="gate-bench-small-"))
        opener = gzip.open if source.suffix == ".gz" else open
        with opener(source, "rt") as f:
            lines = [line for _, line in zip(range(SMALL_ROWS), f)]
        source = scratch / "adult.data"
        source.write_text("".join(lines))
        train = ingest(source, schema).frame
        test = test[:1000]
        args.epsilons, args.seeds, args.rows = [1.0], [0], SMALL_ROWS
    bench = Bench(schema, train, test, args.rows)
    common = {"n_train": len(train), "n_test": len(test), "env": environment()}

    records, failed = [], []
    try:
        for eps in args.epsilons:
            for seed in args.seeds:
                try:
                    record = release_once(bench, source, eps, seed, args.rows, args.holdout)
                except Exception:  # keep the rest of a long grid going; fail at the end
                    traceback.print_exc()
                    failed.append((eps, seed))
                    continue
                record.update(common)
                records.append(record)
                print(f"eps={eps:g} seed={seed}: "
                      f"{'published' if record['published'] else 'QUARANTINED'} "
                      f"({record['gate']}); fidelity suite "
                      f"{_passed(record['fidelity_suite'])}; AUROC {record['tstr_auroc']:.3f}, "
                      f"TVD {record['tvd_2way']:.3f}, L1 {record['l1_3way']:.3f}; run "
                      f"{record['seconds']['run']:.1f} s", flush=True)
                if not args.small:  # an interrupted grid keeps what it finished
                    merge(args.results, [record])
    finally:
        if scratch is not None:
            shutil.rmtree(scratch, ignore_errors=True)

    if args.small:
        print(table(records, []) if records else "no results")
    else:
        print(table(json.loads(args.results.read_text())["runs"] if args.results.exists()
                    else records, reference_rows()))
    if failed:
        print(f"failed: {failed}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
