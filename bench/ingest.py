"""Batched ingest + encode of a large Parquet input against pandas.read_parquet of the file.

Generates (once, cached in --dir) a Parquet file of --rows rows and 20 columns (8 integer and
6 float columns with declared bounds, 4 categoricals with declared categories, a boolean and
a date), written one row group of --row-group rows at a time, with a schema built in code.
Then, each in its own subprocess so that the peak resident memory is the method's own:

  batched ingest+encode   pipelines.batched.ingest_encoded: every batch checked as ingest
                          checks it, encoded to one compact unsigned code per cell
  pandas.read_parquet     the whole file into a DataFrame (no checks, no encoding)

With --release, a third child runs a whole release of the file (``synth run``'s recipe:
dp-marginals at epsilon 1, the default holdout, fidelity suite and leakage checks on their
samples), which reads it in batches (``pipelines.large``).

Peak RSS is the child's ru_maxrss (imports included; "after imports" is the RSS before the
read). Prints a markdown table with the ratios ours / pandas and writes JSON with --json.

    python bench/ingest.py                                  # 10,000,000 rows
    python bench/ingest.py --release                        # and a whole release of them
    python bench/ingest.py --rows 20000 --json /tmp/ingest.json
"""

from __future__ import annotations

import os

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import argparse
import json
import platform
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

METHODS = ("batched ingest+encode", "pandas.read_parquet")
RELEASE = "whole release (synth run, dp-marginals)"
CATEGORIES = {"c_state": 50, "c_job": 12, "c_code": 300, "c_tier": 3}


def schema_dict() -> dict:
    """The file's schema: 20 columns, bounds and categories declared (nothing from rows)."""
    cols = [{"name": f"i{k}", "kind": "integer", "min": 0, "max": 90 if k < 4 else 1_000_000}
            for k in range(8)]
    cols += [{"name": f"f{k}", "kind": "float", "min": -100.0, "max": 100.0} for k in range(5)]
    cols += [{"name": "f_amount", "kind": "float", "min": 0, "max": 1e6, "transform": "log",
              "nullable": True}]
    cols += [{"name": name, "kind": "categorical", "categories": [f"{name}_{v}" for v in
                                                                  range(n)]}
             for name, n in CATEGORIES.items()]
    cols += [{"name": "member", "kind": "boolean"},
             {"name": "day", "kind": "date", "min": "2000-01-01", "max": "2024-12-31"}]
    return {"name": "bench_ingest", "version": "1", "columns": cols}


def generate(path: Path, rows: int, row_group: int) -> None:
    """Writes the file a row group at a time (memory: one row group)."""
    import numpy as np
    import pyarrow as pa
    import pyarrow.parquet as pq

    tmp = path.with_suffix(".part")
    writer = None
    for start in range(0, rows, row_group):
        n = min(row_group, rows - start)
        rng = np.random.default_rng(start)
        data = {f"i{k}": rng.integers(0, 91 if k < 4 else 1_000_001, n) for k in range(8)}
        data |= {f"f{k}": rng.uniform(-100, 100, n) for k in range(5)}
        amount = rng.lognormal(8, 2, n).clip(0, 1e6)
        data["f_amount"] = pa.array(amount, mask=rng.random(n) < 0.02)
        for name, size in CATEGORIES.items():
            labels = np.array([f"{name}_{v}" for v in range(size)], dtype=object)
            data[name] = pa.array(labels[rng.integers(0, size, n)], pa.string())
        data["member"] = rng.random(n) < 0.3
        data["day"] = pa.array(rng.integers(10_957, 20_089, n).astype("int32"), pa.date32())
        table = pa.table(data)
        writer = writer or pq.ParquetWriter(tmp, table.schema)
        writer.write_table(table, row_group_size=n)
    writer.close()
    tmp.replace(path)


def child(method: str, path: str, batch_rows: int) -> None:
    """Runs one method and prints its measurements as JSON (peak RSS of this process)."""
    import pandas as pd
    import pyarrow.parquet as pq

    from pipelines.batched import ingest_encoded
    from schemas import schema_from_dict

    schema = schema_from_dict(schema_dict())
    base = _rss_mb()
    t0 = time.perf_counter()
    if method == RELEASE:
        from pipelines.config import RunConfig
        from pipelines.recipe import run_release
        from schemas.parse import dump_schema

        folder = Path(tempfile.mkdtemp(prefix="bench-release-"))
        (folder / "schema.yaml").write_text(dump_schema(schema))
        result = run_release(RunConfig(input=path, schema_file=str(folder / "schema.yaml"),
                                       out=str(folder / "rel"), epsilon=1.0,
                                       ledger=str(folder / "ledger.db")))
        rows = pq.ParquetFile(path).metadata.num_rows  # read; result: the release's files
        held = sum(f.stat().st_size for f in result.release.iterdir())
    elif method == METHODS[0]:
        encoded = ingest_encoded(path, schema, batch_rows=batch_rows)
        rows = encoded.report.rows
        held = sum(c.nbytes for c in encoded.codes.values())
    else:
        frame = pd.read_parquet(path)
        rows = len(frame)
        held = int(frame.memory_usage(deep=False).sum())
    seconds = time.perf_counter() - t0
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux
    print(json.dumps({"rows": rows, "seconds": round(seconds, 2), "peak_rss_mb": round(peak, 1),
                      "rss_after_imports_mb": round(base, 1),
                      "result_mb": round(held / 2**20, 1)}))


def _rss_mb() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=10_000_000)
    parser.add_argument("--row-group", type=int, default=1_000_000)
    parser.add_argument("--batch-rows", type=int, default=262_144)
    parser.add_argument("--dir", type=Path, default=Path(tempfile.gettempdir()) / "bench_ingest",
                        help="where the generated file is cached (never committed)")
    parser.add_argument("--json", type=Path, help="write the results here")
    parser.add_argument("--release", action="store_true",
                        help="also time a whole release of the file (minutes at 10M rows)")
    parser.add_argument("--child", nargs=2, metavar=("METHOD", "PATH"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(args.child[0], args.child[1], args.batch_rows)
        sys.stdout.flush()  # its measurements are out: skip the interpreter's teardown, where
        os._exit(0)  # a native thread pool once aborted ("terminate called without an active
        # exception") under a parallel test run
    args.dir.mkdir(parents=True, exist_ok=True)
    path = args.dir / f"ingest-{args.rows}-{args.row_group}.parquet"
    if not path.exists():
        t0 = time.perf_counter()
        generate(path, args.rows, args.row_group)
        print(f"generated {path} in {time.perf_counter() - t0:.1f} s")
    results = {}
    for method in (*METHODS, RELEASE) if args.release else METHODS:
        done = subprocess.run([sys.executable, __file__, "--child", method, str(path),
                               "--batch-rows", str(args.batch_rows)],
                              capture_output=True, text=True, check=False)
        if done.returncode != 0:
            sys.stderr.write(done.stderr)
            return 1
        results[method] = json.loads(done.stdout.strip().splitlines()[-1])
    ours, theirs = (results[m] for m in METHODS)
    ratios = {"time": round(ours["seconds"] / theirs["seconds"], 2),
              "peak_rss": round(ours["peak_rss_mb"] / theirs["peak_rss_mb"], 2)}
    columns = len(schema_dict()["columns"])
    print(f"{args.rows:,} rows x {columns} columns, {path.stat().st_size / 2**20:,.0f} MB "
          f"Parquet, row groups of {args.row_group:,}, batches of {args.batch_rows:,}\n")
    print("| method | seconds | peak RSS MB | RSS after imports MB | result MB |\n"
          "|---|---|---|---|---|")
    for method, r in results.items():
        print(f"| {method} | {r['seconds']:.2f} | {r['peak_rss_mb']:,.0f} | "
              f"{r['rss_after_imports_mb']:,.0f} | {r['result_mb']:,.0f} |")
    print(f"| ours / pandas | {ratios['time']:.2f} | {ratios['peak_rss']:.2f} | | |")
    if args.json:
        args.json.write_text(json.dumps({
            "rows": args.rows, "columns": columns, "row_group": args.row_group,
            "batch_rows": args.batch_rows, "file_mb": round(path.stat().st_size / 2**20, 1),
            "machine": f"{platform.machine()}, {os.cpu_count()} CPU cores",
            "methods": results, "ratios": ratios}, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
