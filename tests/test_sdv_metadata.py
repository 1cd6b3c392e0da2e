"""`synth schema from-sdv` / `to-sdv`: SDV's metadata JSON to a draft schema and back, without
importing SDV; a bad metadata file is one bounded error line (exit 2) with nothing printed."""

import json
import re
import subprocess
import sys
import warnings

import pandas as pd
import pytest
import yaml

from pipelines.cli import EXIT_BAD_INPUT, main
from schemas import load_schema
from tests.conftest import ROOT

SINGLE = {
    "METADATA_SPEC_VERSION": "SINGLE_TABLE_V1", "primary_key": "id",
    "columns": {
        "id": {"sdtype": "id", "regex_format": "[0-9]{5}"},
        "age": {"sdtype": "numerical", "computer_representation": "Int64"},
        "score": {"sdtype": "numerical", "computer_representation": "Float"},
        "colour": {"sdtype": "categorical"},
        "member": {"sdtype": "boolean"},
        "day": {"sdtype": "datetime", "datetime_format": "%Y-%m-%d"},
        "stamp": {"sdtype": "datetime", "datetime_format": "%Y-%m-%d %H:%M:%S"},
        "email": {"sdtype": "email", "pii": True},
        "country": {"sdtype": "country_code", "pii": False},
    }}
# what a person declares for each FILL IN, from public knowledge
FILLED = {("age", "min"): "0", ("age", "max"): "120", ("score", "min"): "0",
          ("score", "max"): "1", ("day", "min"): "2000-01-01", ("day", "max"): "2030-12-31",
          ("stamp", "min"): "2000-01-01", ("stamp", "max"): "2030-12-31",
          ("colour", "categories"): "[red, green, other]",
          ("country", "categories"): "[FR, DE, other]"}
TABLE_SCHEMAS = ["adult.yaml", "flchain.yaml", "flchain_identified.yaml", "medical_demo.yaml"]


def run(argv, capsys):
    code = main(argv)
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def write(path, doc) -> str:
    path.write_text(doc if isinstance(doc, str) else json.dumps(doc))
    return str(path)


def fill_in(text: str) -> str:
    """The draft as a person completes it: every FILL IN declared, the draft line deleted
    (the identifiers' dates then need no Safe Harbor rule: the stamped columns are dropped
    here, as a reviewer would generalise or drop them)."""
    out, column = [], None
    for line in text.splitlines():
        found = re.match(r'  - name: "(.*?)"', line)
        column = found.group(1) if found else column
        key = re.match(r"    (min|max|categories): null", line)
        if key:
            line = f"    {key.group(1)}: {FILLED[(column, key.group(1))]}"
        if not line.startswith("draft:"):
            out.append(line)
    return "\n".join(out) + "\n"


def test_from_sdv_drafts_a_schema_that_run_refuses_until_filled_in(tmp_path, capsys):
    meta = write(tmp_path / "shop.metadata.json", SINGLE)
    code, out, err = run(["schema", "from-sdv", meta], capsys)
    assert code == 0 and "FILL IN" in err
    doc = yaml.safe_load(out)
    assert doc["name"] == "shop" and doc["draft"] == {"dp": False}
    kinds = {c["name"]: c.get("kind", c.get("role")) for c in doc["columns"]}
    assert kinds == {"id": "identifier", "age": "integer", "score": "float",
                     "colour": "categorical", "member": "boolean", "day": "date",
                     "stamp": "datetime", "email": "identifier", "country": "categorical"}
    assert out.count("null  # FILL IN") == 10 and "[0-9]" not in out  # no value of the metadata
    draft = write(tmp_path / "shop.yaml", out)
    code, _, err = run(["schema", "check", draft], capsys)
    assert code == EXIT_BAD_INPUT and "column 'age'" in err and err.count("\n") == 1
    # filled in and reviewed, it is a schema (without the identifiers' timestamps)
    done = fill_in(out).replace('  - {name: "id", role: identifier}\n', "").replace(
        '  - {name: "email", role: identifier}\n', "")
    schema = load_schema(write(tmp_path / "done.yaml", done))
    assert schema.draft is None and schema.names == ["age", "score", "colour", "member",
                                                     "day", "stamp", "country"]


def test_from_sdv_reads_multi_table_metadata_with_one_table_or_a_named_one(tmp_path, capsys):
    one = write(tmp_path / "one.json", {"tables": {"people": SINGLE}, "relationships": [],
                                        "METADATA_SPEC_VERSION": "V1"})
    code, out, _ = run(["schema", "from-sdv", one], capsys)
    assert code == 0 and yaml.safe_load(out)["name"] == "people"
    two = write(tmp_path / "two.json", {"tables": {"people": SINGLE, "shops": SINGLE},
                                        "relationships": [], "METADATA_SPEC_VERSION": "V1"})
    code, out, err = run(["schema", "from-sdv", two], capsys)
    assert code == EXIT_BAD_INPUT and out == "" and "--table" in err and "'shops'" in err
    code, out, _ = run(["schema", "from-sdv", two, "--table", "shops", "--name", "s"], capsys)
    assert code == 0 and yaml.safe_load(out)["name"] == "s"
    code, _, err = run(["schema", "from-sdv", two, "--table", "nope"], capsys)
    assert code == EXIT_BAD_INPUT and "no table 'nope'" in err


@pytest.mark.parametrize("text, expect", [
    ('{"columns": {"a": {"sdtype": "numerical"}, "a": {"sdtype": "id"}}}', "twice"),
    ('{"columns": {"a": {"sdtype": "numerical", "range_min": NaN}}}', "NaN"),
    ('{"columns": {"a": ', "does not parse as JSON at line 1"),
    ("[" * 100_000 + "]" * 100_000, "nested past"),
    ('{"columns": {"a": {"sdtype": "numerical"}}, "owner": "x"}', "unknown keys"),
    ('{"columns": {"a": {"sdtype": "numerical"}}, "primary_key": "b"}', "names no column"),
    ('{"columns": {"a\\nb": {"sdtype": "numerical"}}}', "printable"),
    ('{"columns": {"a": {"type": "numerical"}}}', "sdtype"),
    ('{"columns": {}}', "no columns"),
    ('[1, 2]', "JSON object"),
    (b"\xff\xfe{}", "UTF-8"),
    ("", "does not parse"),
])
def test_bad_sdv_metadata_is_one_line_and_prints_nothing(text, expect, tmp_path, capsys):
    path = tmp_path / "m.json"
    path.write_bytes(text if isinstance(text, bytes) else text.encode())
    code, out, err = run(["schema", "from-sdv", str(path)], capsys)
    assert code == EXIT_BAD_INPUT and out == "" and expect in err, err
    assert err.count("\n") == 1 and len(err) < 500


def test_sdv_metadata_past_the_size_limit_or_not_a_file_is_refused(tmp_path, capsys,
                                                                    monkeypatch):
    path = write(tmp_path / "m.json", SINGLE)
    monkeypatch.setenv("SYNTH_MAX_SCHEMA_BYTES", "100")
    code, out, err = run(["schema", "from-sdv", path], capsys)
    assert code == EXIT_BAD_INPUT and out == "" and "SYNTH_MAX_SCHEMA_BYTES" in err
    monkeypatch.delenv("SYNTH_MAX_SCHEMA_BYTES")
    for where in (str(tmp_path), str(tmp_path / "absent.json")):
        code, out, err = run(["schema", "from-sdv", where], capsys)
        assert code == EXIT_BAD_INPUT and out == "" and err.count("\n") == 1


@pytest.mark.parametrize("name", TABLE_SCHEMAS)
def test_to_sdv_and_back_keeps_every_column_and_kind(name, tmp_path, capsys):
    schema = load_schema(ROOT / "schemas" / name)
    code, out, _ = run(["schema", "to-sdv", str(ROOT / "schemas" / name)], capsys)
    assert code == 0
    meta = json.loads(out)
    declared = schema.to_dict()["columns"]
    assert list(meta["columns"]) == [c["name"] for c in declared]
    code, back, _ = run(["schema", "from-sdv", write(tmp_path / "m.json", meta)], capsys)
    assert code == 0
    kinds = {c["name"]: c.get("kind", c.get("role")) for c in yaml.safe_load(back)["columns"]}
    assert kinds == {c["name"]: "identifier" if c.get("role") == "identifier" else c["kind"]
                     for c in declared}


def test_to_sdv_refuses_an_image_schema(capsys):
    code, out, err = run(["schema", "to-sdv", str(ROOT / "schemas" / "fashion_mnist.yaml")],
                         capsys)
    assert code == EXIT_BAD_INPUT and out == "" and "image schema" in err


def test_the_conversion_never_imports_sdv():
    code = ("import sys; from pipelines.sdv_metadata import schema_from_sdv, schema_to_sdv; "
            "import pipelines.cli; "
            "assert not {'sdv', 'rdt', 'ctgan', 'copulas'} & set(sys.modules), sorted(m for m "
            "in sys.modules if m.split('.')[0] in ('sdv', 'rdt'))")
    subprocess.run([sys.executable, "-c", code], check=True, cwd=ROOT)


def test_sdv_loads_to_sdv_and_its_detected_metadata_converts(tmp_path, capsys):
    """SDV itself as the oracle (a test dependency only: it never enters the release path)."""
    metadata = pytest.importorskip("sdv.metadata")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for name in TABLE_SCHEMAS:
            code, out, _ = run(["schema", "to-sdv", str(ROOT / "schemas" / name)], capsys)
            assert code == 0
            loaded = metadata.Metadata.load_from_dict(json.loads(out), single_table_name="t")
            loaded.validate()
        frame = pd.DataFrame({
            "id": range(30), "age": [30 + i for i in range(30)],
            "score": [0.5 * i for i in range(30)], "colour": ["crimson", "teal", "ochre"] * 10,
            "day": pd.date_range("2020-01-01", periods=30).strftime("%Y-%m-%d"),
            "email": [f"a{i}@example.org" for i in range(30)]})
        detected = metadata.Metadata.detect_from_dataframes({"shop": frame}).to_dict()
    code, out, _ = run(["schema", "from-sdv", write(tmp_path / "m.json", detected)], capsys)
    assert code == 0
    kinds = {c["name"]: c.get("kind", c.get("role")) for c in yaml.safe_load(out)["columns"]}
    assert kinds == {"id": "identifier", "age": "integer", "score": "float",
                     "colour": "categorical", "day": "date", "email": "identifier"}
    assert "2020-01-01" not in out and "crimson" not in out  # SDV's ranges read from the rows
