"""Medical-style records: identifiers dropped, quasi-identifiers generalised per HIPAA Safe
Harbor, surrogates, survival consistency and metrics, and a release of flchain_identified.csv
scanned cell by cell for every identifier value of its input."""

from __future__ import annotations

import copy
import json
import re

import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import pytest
import yaml

from pipelines import safe_harbor, surrogates
from pipelines.config import RunConfig
from pipelines.draft import draft_schema
from pipelines.errors import DataError
from pipelines.ingest import ingest
from pipelines.plan import internal_dir, prepare
from pipelines.recipe import run_release
from pipelines.run import fit, generate, load
from schemas import SCHEMA_DIR, SchemaError, load_schema, schema_from_dict
from schemas.roles import SPARSE_ZIP3
from synth import survival
from tests.conftest import ROOT, shared

IDENTIFIED = "flchain/flchain_identified.csv"
SCHEMA = SCHEMA_DIR / "flchain_identified.yaml"
DEMO = ROOT / "data" / "medical" / "patients.csv.gz"
DEMO_SCHEMA = SCHEMA_DIR / "medical_demo.yaml"
IDENTIFIERS = {"mrn", "first_name", "last_name", "ssn", "phone", "email"}


def _config(source, schema, out, **kw) -> RunConfig:
    """A fast release: independent noisy marginals, 2,000 rows, reproducible noise."""
    extra = {"fidelity": {"enabled": False}} if "fidelity" in RunConfig.model_fields else {}
    return RunConfig(input=str(source), schema_file=str(schema), out=str(out), epsilon=1.0,
                     rows=2000, synthesizer="dp-independent", noise_seed=3, **extra, **kw)


@pytest.fixture(scope="module")
def raw() -> pd.DataFrame:
    return pd.read_csv(shared(IDENTIFIED), dtype=str, keep_default_na=False)


@pytest.fixture(scope="module")
def release(tmp_path_factory):
    out = tmp_path_factory.mktemp("medical") / "release"
    return run_release(_config(shared(IDENTIFIED), SCHEMA, out))


def _cells(path) -> set[str]:
    """Every cell of a release file as text: Parquet values and metadata, JSON leaves and keys."""
    if path.suffix == ".parquet":
        table = pq.read_table(path)
        cells = {str(v) for col in table.columns for v in col.to_pylist()}
        meta = table.schema.metadata or {}
        return cells | {x.decode() for kv in meta.items() for x in kv} | set(table.column_names)
    if path.suffix != ".json":  # HTML or text reports: every token between markup
        return set(re.split(r"[\s<>\"'=,;:()\[\]{}]+", path.read_text()))
    out: set[str] = set()

    def walk(node):
        if isinstance(node, dict):
            for k, v in node.items():
                out.add(str(k))
                walk(v)
        elif isinstance(node, list):
            for v in node:
                walk(v)
        else:
            out.add(str(node))
    walk(json.loads(path.read_text()))
    return out


def test_no_identifier_value_appears_in_any_output(release, raw):
    values = {v for c in IDENTIFIERS for v in raw[c] if v}
    internal = internal_dir(release.release)  # the owner's report: no identifier either
    files = sorted(p for d in (release.release, internal) for p in d.iterdir() if p.is_file())
    assert {p.name for p in files} >= {"data.parquet", "privacy_report.json", "validation.json",
                                       "report.html", "leakage.json"}
    for path in files:
        leaked = values & _cells(path)
        assert not leaked, f"{path.name} holds {len(leaked)} identifier value(s)"
        blob = path.read_bytes()  # and no long identifier value even inside a cell
        for c in ("mrn", "ssn", "phone", "email"):
            assert not [v for v in raw[c] if len(v) >= 8 and v.encode() in blob], (path, c)
    # the run's own release check scanned the output for every identifier of the input
    hits = release.verdict.identifier_hits
    assert set(hits) == IDENTIFIERS and not any(hits.values())
    # only the identifier the schema asks to carry is there, as fake surrogate values
    table = pq.read_table(release.release / "data.parquet")
    assert IDENTIFIERS & set(table.column_names) == {"mrn"} and table.column_names[0] == "mrn"
    mrn = table.column("mrn").to_pandas()
    assert mrn.str.fullmatch(r"MRN-\d{8}").all() and mrn.is_unique


def test_release_validates_and_obeys_safe_harbor(release):
    assert json.loads((release.release / "validation.json").read_text())["success"] is True
    table = pq.read_table(release.release / "data.parquet")
    frame = table.to_pandas()
    assert not [f.name for f in table.schema if "date" in str(f.type) or "timestamp"
                in str(f.type)], "a date left the release ungeneralised"
    assert frame["sample_year"].between(1995, 2003).all()  # dates -> years
    assert frame["age_at_sample"].between(0, 90).all()  # birth date -> age at sample, 90+
    assert frame["age"].max() <= 90
    zips = frame["zip_code"].astype(str)
    assert zips.str.fullmatch(r"\d{3}").all() and not zips.isin(SPARSE_ZIP3).any()


def test_release_survival_is_consistent(release):
    frame = pd.read_parquet(release.release / "data.parquet")
    assert frame["futime"].between(0, 5500).all()
    assert frame.loc[frame["death"] == "alive", "chapter"].isna().all()


def test_synthesizers_never_see_identifiers(tmp_path):
    plan = prepare(_config(shared(IDENTIFIED), SCHEMA, tmp_path / "r"))
    data = load(plan)
    assert not IDENTIFIERS & set(data.frame.columns)
    assert data.report.dropped_columns == ()  # dropped as identifiers, not as unknown
    model = fit(plan, data.frame)
    assert not IDENTIFIERS & set(model.encoder_.schema.names)
    # the only identifier in the generated rows is the fake surrogate the schema asks for
    assert IDENTIFIERS & set(generate(plan, model).columns) == {"mrn"}


def test_ingest_generalises_per_safe_harbor(raw):
    frame = ingest(shared(IDENTIFIED), load_schema(SCHEMA)).frame
    assert (frame["sample_year"] == raw["sample_date"].str[:4].astype(int)).all()
    age = raw["age"].astype(float)
    assert (frame["age"] == np.minimum(age, 90)).all() and (age > 89).sum() == 104
    expected = raw["zip_code"].str[:3].where(~raw["zip_code"].str[:3].isin(SPARSE_ZIP3), "000")
    assert (frame["zip_code"].astype(str) == expected).all()
    assert (frame["zip_code"] == "000").sum() == raw["zip_code"].str[:3].isin(SPARSE_ZIP3).sum()
    born, sampled = pd.to_datetime(raw["date_of_birth"]), pd.to_datetime(raw["sample_date"])
    years = (sampled - born).dt.days // 365.2425
    assert (abs(frame["age_at_sample"] - years.clip(upper=90)) <= 1).all()
    assert frame["age_at_sample"].max() == 90


@pytest.mark.parametrize("code, prefix", [("92218", "922"), ("03601", "000"), ("89301", "000"),
                                          ("10001-2345", "100"), ("05901", "000")])
def test_zip3_rule(code, prefix):
    assert safe_harbor.zip3(code) == prefix


def test_sparse_list_is_hhs_seventeen():
    assert len(SPARSE_ZIP3) == 17 == len(set(SPARSE_ZIP3))


def test_unparseable_quasi_identifier_is_reported_and_redacted(tmp_path, raw):
    path = tmp_path / "bad.csv"
    bad = raw.head(50).copy()
    bad.loc[6, "sample_date"] = "19/07/1997"
    bad.loc[9, "zip_code"] = "9A218"
    bad.to_csv(path, index=False)
    with pytest.raises(DataError) as info:
        ingest(path, load_schema(SCHEMA))
    text = str(info.value)
    assert "column 'sample_date' value '19/07/1997'" in text and "row 7 (line 8)" in text
    assert "column 'zip_code'" in text and "row 10" in text
    assert "19/07/1997" not in info.value.public and "row" not in info.value.public
    assert "column 'sample_date' holds a value that is not an ISO date" in info.value.public


def test_offset_generalisation_on_the_demo_table():
    schema = load_schema(DEMO_SCHEMA)
    raw = pd.read_csv(DEMO, dtype=str)
    frame = ingest(DEMO, schema).frame
    stay = (pd.to_datetime(raw["discharge_date"]) - pd.to_datetime(raw["admission_date"])).dt.days
    days = frame["days_from_admission_to_discharge"]
    assert (days == stay).all() and days.min() >= 0
    assert (frame["zip_code"] == "000").sum() > 0 and frame["age"].max() == 90
    assert not {i.name for i in schema.identifiers} & set(frame.columns)


def test_survival_constrain_censors_at_follow_up():
    schema = load_schema(SCHEMA)
    frame = pd.DataFrame({"futime": pd.array([10, 5999, -3, 200], dtype="Int64"),
                          "death": pd.Categorical(["dead", "dead", "alive", "alive"],
                                                  categories=["alive", "dead"]),
                          "chapter": pd.Categorical(["Blood", "Skin", "Skin", None],
                                                    categories=["Blood", "Skin"])})
    out = survival.constrain(frame, schema)
    assert out["futime"].tolist() == [10, 5500, 0, 200]
    assert out["death"].tolist() == ["dead", "alive", "alive", "alive"]  # no event after end
    assert out["chapter"].isna().tolist() == [False, True, True, True]
    assert (out.dtypes == frame.dtypes).all()


def test_kaplan_meier_by_hand():
    # times 1, 2, 2(censored), 3, 4(censored): S = 4/5, then 4/5 * 2/3, then * 0
    km = survival.kaplan_meier(np.array([1, 2, 2, 3, 4]), np.array([1, 1, 0, 1, 0], bool))
    assert np.allclose(km(np.array([0, 1, 2, 2.5, 3, 9])),
                       [1, 0.8, 0.8 * 3 / 4, 0.6, 0.6 * 1 / 2, 0.3])
    assert survival.max_gap(km, km) == 0
    flat = survival.kaplan_meier(np.array([5.0]), np.array([False]))
    assert survival.max_gap(km, flat) == pytest.approx(0.7)
    assert survival.concordance([1, 2, 3], [1, 1, 1], [3, 2, 1]) == 1.0


def test_draft_proposes_roles_without_printing_values(raw):
    text = draft_schema(shared(IDENTIFIED))
    drafted = schema_from_dict(yaml.safe_load(text), path="draft.yaml")
    assert {i.name for i in drafted.identifiers} == IDENTIFIERS
    rules = {c.input_name: c.generalize.to_yaml() for c in drafted.columns if c.generalize}
    assert rules == {"date_of_birth": {"age_at": "sample_date"}, "sample_date": "year",
                     "zip_code": "zip3", "age": "age90"}
    assert all(c.role == "quasi_identifier" for c in drafted.columns if c.generalize)
    for name in IDENTIFIERS | {"zip_code", "date_of_birth", "sample_date"}:
        assert re.search(rf"# REVIEW: column '{name}'", text)
    words = set(re.findall(r"[^\s,'{}\[\]:()]+", text))
    assert not words & {v for c in IDENTIFIERS | {"zip_code"} for v in raw[c]}
    # usable once reviewed: the plain draft leaves out values held by fewer than 10 rows
    # (the bounds' 9 outermost values, rare categories), which --clip / --map-unknown take
    ingest(shared(IDENTIFIED), drafted, clip=True, map_unknown=True)


def test_surrogates_are_fake_unique_and_seeded():
    schema = load_schema(DEMO_SCHEMA)
    frame = pd.DataFrame({"age": range(500)})
    out = surrogates.add_surrogates(frame, schema, seed=1)
    assert list(out.columns) == ["mrn", "age"]
    assert out["mrn"].is_unique and out["mrn"].str.fullmatch(r"SYN-\d{10}").all()
    assert out["mrn"].equals(surrogates.add_surrogates(frame, schema, seed=1)["mrn"])
    assert not set(out["mrn"]) & set(pd.read_csv(DEMO, dtype=str)["mrn"])
    ident = schema.identifiers[0].__class__("x", surrogate="no_such_provider")
    with pytest.raises(surrogates.SurrogateError, match="not a Faker provider"):
        surrogates.generate(ident, 3, seed=0)
    ssn = surrogates.generate(ident.__class__("ssn", surrogate="ssn"), 50, seed=0)
    assert ssn.str.fullmatch(r"\d{3}-\d{2}-\d{4}").all()


def test_surrogates_come_from_a_secret_seed_not_the_public_one():
    """The public seed (published in synthesizer_params) must not let anyone compute the
    surrogates: each run draws 128 secret bits; only a test's noise_seed fixes them."""
    schema = load_schema(DEMO_SCHEMA)
    frame = pd.DataFrame({"age": range(50)})
    draws = [surrogates.add_surrogates(frame, schema, surrogates.surrogate_seed(None))["mrn"]
             for _ in range(2)]
    assert not set(draws[0]) & set(draws[1])
    assert surrogates.surrogate_seed(None) >= 0 and surrogates.surrogate_seed(5) == \
        surrogates.surrogate_seed(5) != surrogates.surrogate_seed(5 + 2**40)


def _broken(mutate) -> str:
    raw = yaml.safe_load(SCHEMA.read_text())
    raw = copy.deepcopy(raw)
    mutate(raw)
    with pytest.raises(SchemaError) as info:
        schema_from_dict(raw, path="x.yaml")
    assert str(info.value).startswith("x.yaml: ")
    return str(info.value)


def _col(raw, name):
    return next(c for c in raw["columns"] if c["name"] == name)


@pytest.mark.parametrize("mutate, message", [
    (lambda r: _col(r, "sample_date").update(generalize="month"), "generalize 'month'"),
    (lambda r: _col(r, "sex").update(generalize="year"), "applies to date or datetime"),
    (lambda r: _col(r, "sample_date").pop("generalize"), "needs a Safe Harbor rule"),
    (lambda r: _col(r, "date_of_birth").update(generalize={"age_at": "mrn"}),
     "refers to 'mrn'"),
    (lambda r: _col(r, "mrn").update(min=1), "identifier only takes"),
    (lambda r: _col(r, "mrn").update(surrogate="a b"), "Faker provider"),
    (lambda r: _col(r, "zip_code").update(categories=["036", "100"]), "sparse"),
    (lambda r: r["survival"].update(time="sex"), "time 'sex'"),
    (lambda r: r["survival"].update(event_value="gone"), "event_value 'gone'"),
    (lambda r: r["survival"].update(follow_up=9000), "follow_up 9000"),
    (lambda r: r["survival"].update(only_with_event=["sex"]), "nullable"),
    (lambda r: r["survival"].pop("event"), "'survival' must be"),
])
def test_schema_rejects_contradictions(mutate, message):
    assert message in _broken(mutate)


def test_roles_round_trip_and_enter_the_fingerprint():
    schema = load_schema(SCHEMA)
    again = schema_from_dict(yaml.safe_load(yaml.safe_dump(schema.to_dict())))
    assert again == schema.__class__(**{**schema.__dict__, "path": None})
    assert again.fingerprint() == schema.fingerprint()
    raw = yaml.safe_load(SCHEMA.read_text())
    _col(raw, "sample_date")["generalize"] = {"offset_from": "sample_date", "min": 0, "max": 0}
    assert schema_from_dict(raw).fingerprint() != schema.fingerprint()
    # a birth year, or an age in days, may show an age over 89: refused
    for rule in ("year", {"offset_from": "sample_date"}):
        raw = yaml.safe_load(SCHEMA.read_text())
        _col(raw, "date_of_birth")["generalize"] = rule
        with pytest.raises(SchemaError, match="birth date .* Safe Harbor forbids"):
            schema_from_dict(raw)
    # in a table with identifiers, every date needs a rule
    raw = yaml.safe_load(SCHEMA.read_text())
    del _col(raw, "sample_date")["generalize"]
    _col(raw, "sample_date")["role"] = "feature"
    with pytest.raises(SchemaError, match="sample_date.*no date element finer than the year"):
        schema_from_dict(raw)
    raw = yaml.safe_load(SCHEMA.read_text())
    raw["survival"]["follow_up"] = 5000
    assert schema_from_dict(raw).fingerprint() != schema.fingerprint()
    assert schema.names[:4] == ["age_at_sample", "zip_code", "sample_year", "age"]
    assert schema.input_names[:3] == ["mrn", "first_name", "last_name"]


def test_parquet_and_headerless_inputs_drop_identifiers(tmp_path):
    raw = pd.read_csv(DEMO, dtype=str).head(200)
    schema = load_schema(DEMO_SCHEMA)
    names = {i.name for i in schema.identifiers}
    path = tmp_path / "demo.parquet"
    raw.to_parquet(path)
    from_parquet = ingest(path, schema).frame
    assert not names & set(from_parquet.columns)
    # a Parquet file's own index (here 10..209) must not shift generalised columns
    raw.set_axis(range(10, 210)).to_parquet(path)
    pd.testing.assert_frame_equal(ingest(path, schema).frame, from_parquet)
    headerless = tmp_path / "demo.csv"
    raw.to_csv(headerless, index=False, header=False)
    plain = schema.__class__(**{**schema.__dict__, "csv": schema.csv.__class__(header=False)})
    frame = ingest(headerless, plain).frame
    assert list(frame.columns) == schema.names and len(frame) == 200


def test_draft_finds_identifiers_by_value_shape(tmp_path):
    path = tmp_path / "visits.csv"
    rng = np.random.default_rng(0)
    path.write_text("contact,code,tel,seen_at,left_at,score\n" + "".join(
        f"p{i}@clinic.example.org,AB-{100000 + i},(555) 010-{i:04d},"
        f"2020-01-{1 + i % 28:02d}T08:00:00,2020-02-{1 + i % 28:02d}T09:30:00,"
        f"{rng.integers(0, 9)}\n" for i in range(60)))
    text = draft_schema(path)
    drafted = schema_from_dict(yaml.safe_load(text))
    assert {i.name for i in drafted.identifiers} == {"contact", "code", "tel"}
    assert "e-mail addresses" in text and "record numbers" in text and "phone numbers" in text
    assert "clinic.example.org" not in text and "AB-1000" not in text
    assert drafted.column("seen_year").generalize.rule == "year"  # a datetime, generalised
    assert drafted.column("score").generalize is None
    frame = ingest(path, drafted, clip=True, map_unknown=True).frame
    assert frame["seen_year"].eq(2020).all() and frame["left_year"].eq(2020).all()


def test_dates_stay_features_without_identifiers(tmp_path):
    path = tmp_path / "plain.csv"
    path.write_text("day,n\n" + "2019-03-04,1\n2021-07-01,2\n" * 10)
    assert schema_from_dict(yaml.safe_load(draft_schema(path))).column("day").kind == "date"


def test_datetime_offsets(tmp_path):
    schema = schema_from_dict({"name": "t", "columns": [
        {"name": "start", "kind": "datetime", "role": "quasi_identifier",
         "min": "2020-01-01T00:00:00", "max": "2020-12-31T23:59:59", "generalize": "year"},
        {"name": "stop", "kind": "datetime", "role": "quasi_identifier",
         "min": "2020-01-01T00:00:00", "max": "2021-01-31T23:59:59",
         "generalize": {"offset_from": "start"}}]})
    stop = schema.column("days_from_start_to_stop")
    assert (stop.minimum, stop.maximum) == (-365, 396)
    path = tmp_path / "t.csv"
    path.write_text("start,stop\n2020-03-01T23:00:00,2020-03-03T01:00:00\n"
                    "2020-05-05T10:00:00,2020-05-05T11:00:00\n")
    frame = ingest(path, schema).frame
    assert frame["start_year"].tolist() == [2020, 2020]
    assert frame["days_from_start_to_stop"].tolist() == [2, 0]


def test_rare_codes_are_merged_for_higher_marginals_at_no_cost():
    from synth.marginals import DPMarginals
    from synth.privacy import PrivacyBudget

    schema = load_schema(DEMO_SCHEMA)
    frame = ingest(DEMO, schema).frame
    settings = {"rounds_per_column": 0, "components": 8, "iterations": 5, "noise_seed": 0,
                "device": "cpu"}
    model = DPMarginals(**settings).fit(frame, schema, PrivacyBudget(1.0, 1e-9))
    codes = list(schema.column("diagnosis").categories)
    merged = model.merged_["diagnosis"]
    assert 2 <= len(merged) < len(codes) and set(merged) <= set(codes)
    assert "I10" not in merged  # the commonest code keeps its own cell
    assert model.epsilon_spent_ <= 1.0 + 1e-9  # the grouping spent nothing extra
    i, j = schema.names.index("sex"), schema.names.index("diagnosis")
    pair = model.model_.marginal(model.model_.probs(), (i, j))
    assert len(pair) == 2 * (len(codes) - len(merged) + 1)  # one cell for the merged group
    sample = model.sample(1000, seed=0)
    assert list(sample["diagnosis"].cat.categories) == codes  # nothing dropped
    off = DPMarginals(**settings, rare_merge=0).fit(frame, schema, PrivacyBudget(1.0, 1e-9))
    assert off.merged_ == {}


def test_draft_drops_a_birth_date_with_no_date_to_take_an_age_at(tmp_path):
    path = tmp_path / "people.csv"
    path.write_text("email,dob,score\n" + "".join(
        f"p{i}@example.org,19{20 + i % 70}-0{1 + i % 9}-1{i % 10},{i % 7}\n" for i in range(300)))
    drafted = schema_from_dict(yaml.safe_load(draft_schema(path)), path="draft.yaml")
    assert {i.name for i in drafted.identifiers} == {"email", "dob"}
    assert drafted.names == ["score"]


@pytest.mark.parametrize("bad", ["inf", "SECRET123", "-inf"])
def test_an_age90_value_that_is_not_a_finite_number_is_refused_not_capped(tmp_path, bad):
    """Safe Harbor's 90+ rule caps finite ages only: text or an infinity is reported by the
    ingest, never silently turned into 90."""
    frame = pd.read_csv(DEMO, dtype=str, nrows=40)
    frame.loc[5, "age"] = bad
    path = tmp_path / "patients.csv"
    frame.to_csv(path, index=False)
    with pytest.raises(DataError, match="'age'") as info:
        ingest(path, load_schema(DEMO_SCHEMA))
    assert "SECRET123" not in info.value.public
