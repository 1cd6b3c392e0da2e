"""Hostile names cannot escape the output root: a fuzz corpus of names and output locations
(absolute paths, '..', links, NUL and control characters, unicode look-alikes, device
names, very long names), each refused with a clear error or kept strictly inside the root;
and overwriting never deletes a folder this tool did not write."""

import os
import random
import string
from pathlib import Path

import pandas as pd
import pytest

from pipelines.cli import EXIT_BAD_INPUT, main
from pipelines.paths import ROOT_ENV, UnsafePath, release_dir, safe_name
from pipelines.publish import PublishError, publish_folder, publish_table
from tests.conftest import ROOT

HOSTILE = [
    "", " ", ".", "..", "...", "../x", "../../etc/passwd", "..\\..\\windows", "/etc",
    "/etc/cron.d/x", "/", "//server/share", "~", "~root/.ssh", "a/../../b", "a/b/../../..",
    "x\x00y", "\x00", "name\n", "tab\tname", "bell\x07", "esc\x1b[31m", "del\x7f",
    "\u202eevil", "caf\u00e9", "\u0430dmin", "\uff0e\uff0e", "\u2024\u2024", "..\u2215x",
    "con", "CON.txt", "nul", "aux.parquet", "com1", "lpt9", "x" * 101, "x" * 4096,
    ".hidden", "-rf", "trailing.", "trailing ", "a b", "a;rm -rf /", "$(reboot)", "`id`",
    "a|b", "a>b", "a*", "a?", "%2e%2e%2f", "..%2f", "file:///etc", "a:b", "a\\b",
    "./x", "x/", "x//y", None, 7, b"bytes", ["list"],
]
FUZZ_SEED = 20261126


def fuzzed(n: int = 200) -> list[str]:
    """Random names from an alphabet weighted towards separators, dots and controls."""
    rng = random.Random(FUZZ_SEED)
    alphabet = string.ascii_letters + string.digits + "./\\-_ ~\x00\n\t:%$*?\u202e\u2215\uff0e"
    return ["".join(rng.choice(alphabet) for _ in range(rng.randint(1, 12)))
            for _ in range(n)]


def short(value) -> str:
    return repr(value)[:40]


@pytest.mark.parametrize("name", HOSTILE + fuzzed(), ids=short)
def test_a_name_is_one_plain_path_component_or_refused(name, tmp_path):
    try:
        kept = safe_name(name, "data set name")
    except UnsafePath as exc:
        assert "data set name" in str(exc)
        return
    assert kept == name and len(kept) <= 100 and kept not in (".", "..")
    assert set(kept) <= set(string.ascii_letters + string.digits + "._-")
    assert (tmp_path / kept).resolve().parent == tmp_path.resolve()


@pytest.mark.parametrize("out", HOSTILE + fuzzed(), ids=short)
def test_an_output_location_stays_inside_the_root_or_is_refused(out, tmp_path, monkeypatch):
    root = tmp_path / "releases"
    root.mkdir()
    (root / "link").symlink_to(tmp_path)  # a link inside the root that leads out of it
    monkeypatch.chdir(root)  # relative locations are taken from here, inside the root
    try:
        target = release_dir(out, root)
    except UnsafePath as exc:
        assert "output" in str(exc) or "outside" in str(exc)
        return
    base = root.resolve()
    for path in (target, target.with_name(target.name + ".internal"),
                 target.with_name(target.name + ".quarantine")):
        assert path.resolve().is_relative_to(base) and path.resolve() != base


def test_links_out_of_the_root_are_refused(tmp_path):
    root = tmp_path / "releases"
    root.mkdir()
    (root / "link").symlink_to(tmp_path)
    (root / "ok.internal").symlink_to(tmp_path / "elsewhere")
    for out in ("link/x", "link", "ok"):
        with pytest.raises(UnsafePath):
            release_dir(str(root / out), root)
    assert release_dir(str(root / "fine" / "x"), root) == root.resolve() / "fine" / "x"


def test_a_release_cannot_be_planted_in_or_named_as_the_tools_own_folders(tmp_path):
    root = tmp_path / "releases"
    (root / "theirs").mkdir(parents=True)
    (root / "theirs" / "manifest.json").write_text("{}")  # a release
    for out in ("theirs/sub", "x.internal", "x.quarantine", "theirs.internal/sub", ".hidden"):
        with pytest.raises(UnsafePath):
            release_dir(str(root / out), root)
    with pytest.raises(UnsafePath):  # the names are refused without a root too
        release_dir(str(tmp_path / "y.internal"))


def test_a_run_outside_the_root_or_onto_a_foreign_folder_spends_nothing(tmp_path, adult_sample,
                                                                         monkeypatch, capsys):
    root = tmp_path / "releases"
    monkeypatch.setenv(ROOT_ENV, str(root))
    victim = tmp_path / "victim"  # outside the root
    theirs = root / "theirs"  # inside it, but not a release
    for folder, files in ((victim, {"precious.txt": "keep me"}),
                          (theirs, {"data.parquet": "not ours", "thesis.docx": "keep me"})):
        folder.mkdir(parents=True)
        for name, text in files.items():
            (folder / name).write_text(text)
    for folder, message in ((victim, "outside the output root"),
                            (theirs, "refusing to replace")):
        code = main(["run", "--input", str(adult_sample), "--schema",
                     str(ROOT / "schemas" / "adult.yaml"), "--epsilon", "1", "--out",
                     str(folder), "--overwrite", "--ledger", str(tmp_path / "l.db"), "-q"])
        assert code == EXIT_BAD_INPUT and message in capsys.readouterr().err
        assert not (tmp_path / "l.db").exists()  # refused before the ledger was touched
        assert not folder.with_name(folder.name + ".internal").exists()
    assert (victim / "precious.txt").read_text() == (theirs / "thesis.docx").read_text()


def test_overwrite_replaces_only_what_this_tool_wrote(tmp_path):
    import pyarrow as pa

    table = pa.table({"x": [1, 2]})
    mine = tmp_path / "mine"
    publish_table(table, mine)
    publish_table(table, mine, overwrite=True)  # a release: replaced
    for name, setup in {
        "folder": lambda p: (p.mkdir(), (p / "notes.txt").write_text("x")),
        "mixed": lambda p: (p.mkdir(), (p / "data.parquet").write_text("x"),
                            (p / "thesis.docx").write_text("x")),
        "nested": lambda p: (p.mkdir(), (p / "privacy_report.json").write_text("{}"),
                             (p / "sub").mkdir()),
        "file": lambda p: p.write_text("x"),
        "link": lambda p: p.symlink_to(mine),
    }.items():
        path = tmp_path / name
        setup(path)
        before = sorted(os.listdir(tmp_path))
        with pytest.raises(PublishError, match="refusing to replace"):
            publish_table(table, path, overwrite=True)
        with pytest.raises(PublishError, match="refusing to replace"):
            publish_folder({"report.html": b"x"}, path)
        assert sorted(os.listdir(tmp_path)) == before
    assert pd.read_parquet(mine / "data.parquet")["x"].tolist() == [1, 2]


def test_a_grid_of_releases_names_its_folders_safely(tmp_path):
    from flows.fanout import expand_grid
    from pipelines.config import RunConfig

    base = RunConfig(input="a.csv", schema_file="s.yaml", out=str(tmp_path), epsilon=1)
    [config] = expand_grid(base, datasets=[("data/adult.csv", "s.yaml")])
    assert Path(config.out) == tmp_path / "adult-eps1-seed0"
    for hostile in ("x/..", "evil\nname.csv", "\u202ex.csv", "a b.csv"):
        with pytest.raises(UnsafePath, match="run name"):
            expand_grid(base, datasets=[(hostile, "s.yaml")])
