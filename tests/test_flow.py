"""The Prefect flow end to end on real Adult rows, against a real (temporary) Prefect server."""

import json
from datetime import UTC, datetime

import duckdb
import pandas as pd
import pytest

from synth.privacy import zcdp_epsilon
from tests.conftest import ROOT, stored_files

# the storage of the shared test server as it was before this module's first flow run
pytestmark = pytest.mark.usefixtures("stored_before")

REQUIRED_METADATA = {"data_set", "schema_version", "schema_fingerprint", "synthesizer",
                     "synthesizer_params", "epsilon", "delta", "accountant", "mechanism",
                     "rows", "created",
                     "code_version", "validation"}


def test_flow_publishes_a_release_that_duckdb_and_pandas_read(prefect_home, adult_sample,
                                                              tmp_path):
    from flows.parameters import parameters
    from flows.release import release
    from pipelines.config import FidelityThresholds, RunConfig

    start = datetime.now(UTC)  # the test server is shared: this test's artifacts are newer
    out = tmp_path / "adult"
    # 1,800 training rows and 800 synthetic ones are too few for the default fidelity bounds
    loose = FidelityThresholds(ks_max=0.3, tv_max=0.3, association_max=0.2, pmse_max=0.25,
                               tstr_min=0.5)
    config = RunConfig(input=str(adult_sample), schema_file=str(ROOT / "schemas" / "adult.yaml"),
                       out=str(out), epsilon=1.0, rows=800, fidelity=loose,  # default synthesizer
                       noise_seed=5,  # reproducible: the checks see the same rows every time
                       components=64)  # a small mixture: what is asserted does not depend on it
    assert parameters(config)["marginals"] == {"components": 64}  # dp-marginals' own group
    result = release(**parameters(config))

    # the flow returns where the release is and what it claims, never rows
    assert set(result) == {"release", "privacy_report"}
    report = result["privacy_report"]
    assert report["epsilon"] <= 1.0 and report["delta"] == 1e-9
    assert json.loads((out / "privacy_report.json").read_text()) == report

    data = out / "data.parquet"
    frame = pd.read_parquet(data)
    assert len(frame) == 800
    assert str(frame["age"].dtype) == "int64" and str(frame["income"].dtype) == "category"
    types = dict(duckdb.sql(f"select column_name, column_type from (describe select * from "
                            f"read_parquet('{data}'))").fetchall())
    assert types["age"] == "BIGINT" and types["capital-gain"] == "BIGINT"
    assert types["income"] == "VARCHAR"
    income = {row[0] for row in duckdb.sql(f"select distinct income from '{data}'").fetchall()}
    assert income <= {"<=50K", ">50K"}

    kv = {k.decode().removeprefix("synth."): v.decode() for k, v in duckdb.sql(
        f"select key, value from parquet_kv_metadata('{data}')").fetchall()}
    assert REQUIRED_METADATA <= set(kv)
    assert float(kv["epsilon"]) == report["epsilon"] and kv["rows"] == "800"
    assert kv["synthesizer"] == "dp-marginals" and kv["accountant"] == "zcdp"
    # the stated epsilon is the zCDP total of OpenDP's own privacy maps, converted
    rho = sum(m["rho"] for m in report["measurements"])
    assert report["epsilon"] == pytest.approx(zcdp_epsilon(rho, 1e-9))
    assert kv["validation"].startswith("schema suite passed")

    # the same run again publishes nothing and spends nothing
    written = data.stat().st_mtime_ns
    assert release(**parameters(config)) == result and data.stat().st_mtime_ns == written

    # the Prefect UI shows a summary, the checks as a table and a link to the report
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.sorting import ArtifactSort

    with get_client(sync_client=True) as client:  # the first run's, where the rerun made one
        artifacts = {a.key: a for a in client.read_artifacts(sort=ArtifactSort.CREATED_DESC)
                     if a.created >= start}
    assert {"release", "release-checks", "release-report"} <= set(artifacts)
    assert "Published" in artifacts["release"].data
    checks = artifacts["release-checks"].data
    assert "measured marginals" in str(checks) and "canary audit" in str(checks)
    assert "fidelity" not in str(checks) and "leakage" not in str(checks)  # internal only
    # not served: the release-safe report's path (served runs get an HTTP link, never a
    # file:// one; the internal report is not linked from Prefect)
    report = artifacts["release-report"].data
    assert f"{out / 'report.html'}" in report and "file://" not in report
    assert ".internal" not in report


def test_image_flow_publishes_an_image_release(prefect_home, tmp_path):
    """The same flow takes an image schema (a subflow): PNGs in Parquet, contact sheet,
    report."""
    import numpy as np

    from flows.parameters import parameters
    from flows.release import release
    from pipelines.config import RunConfig
    from pipelines.images import ingest_images
    from schemas import load_image_schema

    schema_file = ROOT / "schemas" / "fashion_mnist.yaml"
    data = ingest_images(ROOT / "data" / "fashion-mnist", load_image_schema(schema_file))
    npz = tmp_path / "tiny.npz"
    np.savez(npz, images=data.images[:300], labels=data.labels[:300])
    out = tmp_path / "images"
    result = release(**parameters(RunConfig(
        input=str(npz), schema_file=str(schema_file), out=str(out), epsilon=10.0, delta=1e-5,
        rows=40, synthesizer="dp-conv-gan", epochs=1, batch_size=100)))
    assert result["release"] == str(out) and result["privacy_report"]["epsilon"] <= 10
    frame = pd.read_parquet(out / "data.parquet")
    assert len(frame) == 40 and {"image", "label"} <= set(frame.columns)
    assert (out / "contact_sheet.png").exists() and (out / "report.html").exists()


def test_prefect_persisted_nothing_private(prefect_home, adult_sample, stored_before):
    """Private tasks run with persistence and caching off: no result files, and no real
    value in anything Prefect wrote to its storage."""
    assert stored_files(prefect_home) - stored_before == set()
    real_fnlwgts = {line.split(",")[2].strip() for line in adult_sample.read_text().splitlines()}
    for path in prefect_home.rglob("*"):
        if path.is_file() and path.suffix not in (".db", ".db-wal", ".db-shm"):
            text = path.read_bytes()
            assert not any(v.encode() in text for v in list(real_fnlwgts)[:200]), path


def test_failed_flow_leaves_no_private_value_in_prefect(prefect_home, tmp_path, capsys,
                                                        caplog):
    """A bad input fails the flow with a one-line error; the private value it quotes reaches
    the operator's stderr, but not Prefect's database, logs or result storage."""
    from prefect.settings import PREFECT_API_DATABASE_CONNECTION_URL

    from flows.release import main

    marker = "Zebra-secret-9931"
    data = tmp_path / "bad.csv"
    data.write_text("39, " + marker + ", 77516, Bachelors, 13, Never-married, Adm-clerical, "
                    "Not-in-family, White, Male, 2174, 0, 40, United-States, <=50K\n")
    code = main(["--input", str(data), "--schema", str(ROOT / "schemas" / "adult.yaml"),
                 "--epsilon", "1", "--out", str(tmp_path / "out")])
    err = capsys.readouterr().err
    assert code == 2
    assert "error: " in err and "column 'workclass' value <redacted>" in err
    assert marker not in err
    # the full message goes to this process's own (non-Prefect) logger only
    assert any(marker in r.getMessage() for r in caplog.records if r.name == "synth.local")
    assert not (tmp_path / "out").exists()

    url = PREFECT_API_DATABASE_CONNECTION_URL.value()
    db = url.split("///", 1)[1] if url and "sqlite" in url else None
    places = [prefect_home] + ([__import__("pathlib").Path(db).parent] if db else [])
    scanned = 0
    for place in places:
        for path in place.rglob("*"):
            if path.is_file():
                blob = path.read_bytes()
                scanned += 1
                assert marker.encode() not in blob, path
                assert __import__("base64").b64encode(marker.encode())[:12] not in blob, path
    assert scanned > 0 and db is not None
