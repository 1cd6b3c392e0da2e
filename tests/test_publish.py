"""Tests for pipelines.publish: typed Parquet that pandas and DuckDB read back, and atomicity."""

from __future__ import annotations

import datetime
import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import duckdb
import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from pipelines.publish import (
    PublishError,
    Release,
    atomic,
    publish,
    read_release_metadata,
    to_arrow,
)
from schemas import SCHEMA_DIR, load_schema, pandas_dtype, schema_from_dict

REPO = Path(__file__).resolve().parents[1]
ADULT_DATA = Path("/work/shared/datasets/adult/adult.data")
META = {"epsilon": "1.0", "delta": "1e-05", "run_id": "r-42"}

SMALL = schema_from_dict({
    "name": "small", "version": "3",
    "columns": [
        {"name": "visit", "kind": "date", "min": "2020-01-01", "max": "2024-12-31",
         "nullable": True},
        {"name": "seen_at", "kind": "datetime", "min": "2020-01-01T00:00:00",
         "max": "2024-12-31T23:59:59"},
        {"name": "score", "kind": "float", "min": 0, "max": 1, "nullable": True},
        {"name": "count", "kind": "integer", "min": 0, "max": 100, "nullable": True},
        {"name": "smoker", "kind": "boolean", "nullable": True},
        {"name": "colour", "kind": "categorical", "categories": ["red", "green", "blue"],
         "nullable": True},
    ],
})


def cast(frame: pd.DataFrame, schema) -> pd.DataFrame:
    """Casts every column to the schema's in-memory dtype (what ingest would hand on)."""
    return pd.DataFrame({c.name: frame[c.name].astype(pandas_dtype(c)) for c in schema.columns})


@pytest.fixture(scope="module")
def adult():
    schema = load_schema(SCHEMA_DIR / "adult.yaml")
    raw = pd.read_csv(ADULT_DATA, header=None, names=schema.names, sep=", ", engine="python",
                      na_values=["?"], keep_default_na=False, nrows=200)
    return schema, cast(raw, schema)


@pytest.fixture()
def small() -> pd.DataFrame:
    return cast(pd.DataFrame({
        "visit": pd.to_datetime(["2021-03-04", None, "2024-02-29", "2020-01-01"]),
        "seen_at": pd.to_datetime(["2021-03-04 10:11:12.123456", "2022-01-01 00:00:00",
                                   "2023-06-30 23:59:59", "2020-01-01 12:00:00"],
                                  format="ISO8601"),
        "score": [0.25, np.nan, 1.0, 0.0],
        "count": pd.array([3, None, 100, 0], dtype="Int64"),
        "smoker": pd.array([True, False, None, True], dtype="boolean"),
        "colour": ["red", None, "blue", "red"],
    }), SMALL)


def test_adult_round_trips_through_pandas(tmp_path, adult):
    schema, frame = adult
    release = publish(frame, schema, META, tmp_path / "adult" / "v1",
                      extra_files={"privacy_report.json": b'{"epsilon": 1.0}'})
    assert release == Release(path=tmp_path / "adult" / "v1", data=tmp_path / "adult" / "v1" /
                              "data.parquet", files=("data.parquet", "privacy_report.json",
                                                     "manifest.json"))
    assert sorted(os.listdir(release.path)) == ["data.parquet", "manifest.json",
                                                "privacy_report.json"]
    assert (release.path / "privacy_report.json").read_bytes() == b'{"epsilon": 1.0}'
    back = pd.read_parquet(release.data)
    assert back["workclass"].cat.categories.tolist() == list(schema.column("workclass").categories)
    assert back["workclass"].isna().sum() == frame["workclass"].isna().sum() > 0
    pd.testing.assert_frame_equal(cast(back, schema), frame)


def test_small_round_trips_through_pandas(tmp_path, small):
    release = publish(small, SMALL, META, tmp_path / "small")
    back = pd.read_parquet(release.data)
    assert type(back["visit"].iloc[0]) is datetime.date  # date32 reads back as datetime.date
    pd.testing.assert_frame_equal(cast(back, SMALL), small)


def test_arrow_schema_is_declared_and_categoricals_are_dictionary_encoded(tmp_path, adult, small):
    schema, frame = adult
    parquet = publish(frame, schema, META, tmp_path / "a").data
    read = pq.read_schema(parquet)
    for column in schema.columns:
        if column.kind == "categorical":
            assert read.field(column.name).type == pa.dictionary(pa.int32(), pa.string())
        else:
            assert read.field(column.name).type == pa.int64()
    row_group = pq.ParquetFile(parquet).metadata.row_group(0)
    for i, name in enumerate(schema.names):
        chunk = row_group.column(i)
        assert chunk.path_in_schema == name
        if schema.column(name).kind == "categorical":
            assert chunk.has_dictionary_page and "RLE_DICTIONARY" in chunk.encodings
    types = to_arrow(small, SMALL, {}).schema
    assert [types.field(c.name).type for c in SMALL.columns] == [
        pa.date32(), pa.timestamp("us"), pa.float64(), pa.int64(), pa.bool_(),
        pa.dictionary(pa.int32(), pa.string())]
    assert [f.nullable for f in types] == [c.nullable for c in SMALL.columns]


def test_duckdb_reads_declared_types_and_nulls(tmp_path, adult, small):
    schema, frame = adult
    parquet = publish(frame, schema, META, tmp_path / "a").data
    rel = duckdb.sql(f"select age, workclass, income from read_parquet('{parquet}')")
    assert [str(t) for t in rel.types] == ["BIGINT", "VARCHAR", "VARCHAR"]
    rows = rel.fetchall()
    assert rows[0] == (39, "State-gov", "<=50K")
    assert sum(r[1] is None for r in rows) == frame["workclass"].isna().sum()

    parquet = publish(small, SMALL, META, tmp_path / "s").data
    rel = duckdb.sql(f"select * from read_parquet('{parquet}')")
    assert [str(t) for t in rel.types] == ["DATE", "TIMESTAMP", "DOUBLE", "BIGINT", "BOOLEAN",
                                           "VARCHAR"]
    first, second = rel.fetchall()[:2]
    assert str(first[0]) == "2021-03-04" and str(first[1]) == "2021-03-04 10:11:12.123456"
    assert first[2:] == (0.25, 3, True, "red")
    assert second[0] is None and second[2:4] == (None, None)  # NaN is published as NULL


def test_metadata_round_trips(tmp_path, small):
    parquet = publish(small, SMALL, META, tmp_path / "s").data
    expected = {**META, "schema_fingerprint": SMALL.fingerprint()}
    assert read_release_metadata(parquet) == expected
    kv = {k.decode(): v.decode() for k, v in duckdb.sql(
        f"select key, value from parquet_kv_metadata('{parquet}')").fetchall()}
    assert kv["synth.run_id"] == "r-42" and json.loads(kv["synth.metadata"]) == expected
    with pytest.raises(PublishError, match="missing.parquet"):
        read_release_metadata(tmp_path / "missing.parquet")


def test_bad_data_is_reported_at_once_and_nothing_is_written(tmp_path, small):
    bad = small.assign(colour=pd.Series(["red", "purple", None, "red"]), extra=1)
    bad["seen_at"] = pd.NaT
    with pytest.raises(PublishError) as info:
        publish(bad, SMALL, {"epsilon": 1.0}, tmp_path / "out")
    message = str(info.value)
    for part in ("['extra']", "'purple'", "'seen_at' has 4 missing values", "string values"):
        assert part in message
    assert not list(tmp_path.iterdir())


def test_existing_release_needs_overwrite(tmp_path, small):
    out = tmp_path / "rel"
    publish(small, SMALL, META, out, extra_files={"old.txt": b"old"})
    with pytest.raises(PublishError, match=f"{out}.*overwrite=True"):
        publish(small.head(1), SMALL, META, out)
    assert len(pd.read_parquet(out / "data.parquet")) == 4
    release = publish(small.head(1), SMALL, {"run_id": "new"}, out, overwrite=True)
    assert sorted(os.listdir(out)) == ["data.parquet", "manifest.json"]
    assert len(pd.read_parquet(release.data)) == 1
    assert read_release_metadata(release.data)["run_id"] == "new"
    assert os.listdir(tmp_path) == ["rel"]  # the old release and staging are gone


def test_empty_existing_directory_is_filled(tmp_path, small):
    (tmp_path / "rel").mkdir()
    assert publish(small, SMALL, META, tmp_path / "rel").data.exists()


@pytest.mark.parametrize("overwrite", [False, True])
def test_failure_mid_write_leaves_nothing_behind(tmp_path, small, monkeypatch, overwrite):
    out = tmp_path / "rel"
    if overwrite:
        publish(small, SMALL, META, out)

    def broken_write(table, where, **kwargs):
        where.write(b"PAR1 partial")
        raise OSError("disk full")

    monkeypatch.setattr(pq, "write_table", broken_write)
    with pytest.raises(OSError, match="disk full"):
        publish(small, SMALL, META, out, overwrite=overwrite)
    assert os.listdir(tmp_path) == (["rel"] if overwrite else [])
    if overwrite:
        monkeypatch.undo()
        assert len(pd.read_parquet(out / "data.parquet")) == 4  # the old release is intact


@pytest.mark.parametrize("extra", [{"report.json": "not bytes"}, {"../escape": b"x"},
                                   {"data.parquet": b"x"}, {".hidden": b"x"}])
def test_unusable_extra_files_are_rejected(tmp_path, small, extra):
    with pytest.raises(PublishError, match="extra file"):
        publish(small, SMALL, META, tmp_path / "rel", extra_files=extra)
    assert not list(tmp_path.iterdir())


def test_failure_writing_an_extra_file_cleans_up(tmp_path, small, monkeypatch):
    calls = []
    real = atomic.write_file

    def flaky(path, blob):
        calls.append(path.name)
        if len(calls) == 2:
            raise OSError("I/O error")
        real(path, blob)

    monkeypatch.setattr(atomic, "write_file", flaky)
    with pytest.raises(OSError, match="I/O error"):
        publish(small, SMALL, META, tmp_path / "p" / "rel",
                extra_files={"a.json": b"{}", "b.json": b"{}"})
    assert os.listdir(tmp_path / "p") == []


CHILD = textwrap.dedent("""
    import sys, time
    from pathlib import Path
    import pandas as pd
    from pipelines import publish as p
    from pipelines.publish import atomic
    from schemas import load_schema, SCHEMA_DIR, pandas_dtype

    out, marker, overwrite = Path(sys.argv[1]), Path(sys.argv[2]), sys.argv[3] == "1"
    schema = load_schema(SCHEMA_DIR / "adult.yaml")
    raw = pd.read_csv(sys.argv[4], header=None, names=schema.names, sep=", ",
                      engine="python", na_values=["?"], keep_default_na=False, nrows=50)
    frame = pd.DataFrame({c.name: raw[c.name].astype(pandas_dtype(c)) for c in schema.columns})

    def hang(path, blob):
        with open(path, "wb") as f:
            f.write(blob[:3])  # half a file on disk, then wait to be killed
        marker.write_text("ready")
        time.sleep(60)

    atomic.write_file = hang
    p.publish(frame, schema, {"run_id": "crash"}, out, overwrite=overwrite,
              extra_files={"privacy_report.json": b"{\\"epsilon\\": 1.0}"})
""")


@pytest.mark.parametrize("overwrite", [False, True])
def test_sigkill_mid_publish_never_exposes_a_partial_release(tmp_path, small, overwrite):
    out = tmp_path / "releases" / "adult"
    if overwrite:
        publish(small, SMALL, {"run_id": "old"}, out)
    marker = tmp_path / "ready"
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    child = subprocess.Popen([sys.executable, "-c", CHILD, str(out), str(marker),
                              "1" if overwrite else "0", str(ADULT_DATA)], cwd=REPO, env=env)
    try:
        deadline = time.monotonic() + 60
        while not marker.exists():
            assert child.poll() is None, "the child died before reaching the kill point"
            assert time.monotonic() < deadline, "the child never reached the kill point"
            time.sleep(0.05)
        os.kill(child.pid, signal.SIGKILL)
        assert child.wait(timeout=30) == -signal.SIGKILL
    finally:
        if child.poll() is None:
            child.kill()
    leftovers = [n for n in os.listdir(out.parent) if n != "adult"]
    assert leftovers and all(n.startswith(".adult.staging-") for n in leftovers)
    if overwrite:  # the old release is untouched and complete
        assert read_release_metadata(out / "data.parquet")["run_id"] == "old"
        assert sorted(os.listdir(out)) == ["data.parquet", "manifest.json"]
    else:
        assert not out.exists()
    assert publish(small, SMALL, META, out, overwrite=True).data.exists()  # recovery works
    assert os.listdir(out.parent) == ["adult"]  # and sweeps what the killed writer left


def test_sweep_keeps_what_a_live_writer_or_another_host_is_writing(tmp_path):
    import socket

    from pipelines.publish import sweep_leftovers

    host = socket.gethostname().replace("-", "_")
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    names = {"dead": f".rel.staging-{host}-{dead.pid}-abc",
             "dead_old": f".rel.old-{host}-{dead.pid}-abc",
             "live": f".rel.staging-{host}-{os.getpid()}-abc",
             "other_host": f".rel.staging-elsewhere-{dead.pid}-abc",
             "unrelated": ".rel2.staging-x"}
    for name in names.values():
        (tmp_path / name).mkdir()
    removed = sweep_leftovers(tmp_path / "rel")
    assert sorted(p.name for p in removed) == sorted([names["dead"], names["dead_old"]])
    assert sorted(os.listdir(tmp_path)) == sorted([names["live"], names["other_host"],
                                                   names["unrelated"]])


def test_the_manifest_is_the_commit_record_a_reader_checks(tmp_path, small, capsys):
    from pipelines.cli import EXIT_BAD_INPUT, main
    from pipelines.publish import verify_release

    out = tmp_path / "rel"
    release = publish(small, SMALL, META, out, extra_files={"notes.txt": b"hello"})
    assert release.files[-1] == "manifest.json" and verify_release(out) == []
    manifest = json.loads((out / "manifest.json").read_text())
    assert set(manifest["files"]) == {"data.parquet", "notes.txt"}
    assert main(["verify", str(out)]) == 0 and "complete" in capsys.readouterr().out
    (out / "notes.txt").write_bytes(b"hellO")  # same size, other bytes
    (out / "stray.txt").write_text("x")
    problems = verify_release(out)
    assert any("notes.txt: size or sha256" in p for p in problems)
    assert any("stray.txt: not in the manifest" in p for p in problems)
    (out / "manifest.json").unlink()
    assert main(["verify", str(out)]) == EXIT_BAD_INPUT
    assert "not a complete release" in capsys.readouterr().err
