"""The image data path: schema, ingest of each form (IDX, folder of PNG/JPEG, NPZ) with bad
inputs, the Parquet release read back by pandas, pyarrow and DuckDB, the contact sheet, a
tiny release through ``synth run`` with the real models, and the metrics on tiny data."""

import dataclasses
import gzip
import json
import struct
import sys

import duckdb
import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from PIL import Image

from pipelines.cli import EXIT_BAD_INPUT, main
from pipelines.image_publish import (
    CONTACT_SHEET,
    check_image_table,
    contact_sheet,
    decode_png,
    image_table,
)
from pipelines.images import ingest_images, read_idx_array
from pipelines.ingest import DataError
from pipelines.ledger import Ledger
from pipelines.publish import publish_table, read_release_metadata
from schemas import SchemaError, is_image_schema, load_image_schema
from tests.conftest import ROOT

FASHION = ROOT / "schemas" / "fashion_mnist.yaml"
DEMO = ROOT / "data" / "fashion-mnist"
TINY = """\
kind: image
name: tiny-images
version: "3"
height: 6
width: 5
channels: {channels}
value_range: [{lo}, {hi}]
labels: [cat, T-shirt/top, dog]
"""


def tiny_schema(tmp_path, channels=1, lo=0, hi=255):
    path = tmp_path / f"tiny-{channels}-{lo}-{hi}.yaml"
    path.write_text(TINY.format(channels=channels, lo=lo, hi=hi))
    return load_image_schema(path)


def pixels(n, channels=1, seed=0):
    return np.random.default_rng(seed).integers(0, 256, (n, 6, 5, channels), dtype=np.uint8)


def write_idx(path, array, gz=True):
    blob = b"\0\0\x08" + bytes([array.ndim]) + struct.pack(f">{array.ndim}I", *array.shape)
    blob += array.astype(np.uint8).tobytes()
    path.write_bytes(gzip.compress(blob) if gz else blob)


def error_of(call) -> str:
    with pytest.raises(DataError) as info:
        call()
    return str(info.value)


# ----------------------------------------------------------------------------- schema

def test_fashion_mnist_schema_declares_shape_range_and_the_ten_classes():
    schema = load_image_schema(FASHION)
    assert schema.shape == (28, 28, 1) and schema.mode == "L"
    assert schema.value_range == (0, 255) and len(schema.labels) == 10
    assert schema.labels[0] == "T-shirt/top" and schema.labels[9] == "Ankle boot"
    assert is_image_schema(FASHION) and not is_image_schema(ROOT / "schemas" / "adult.yaml")


def test_bad_image_schema_names_the_file_and_every_field(tmp_path):
    path = tmp_path / "bad.yaml"
    path.write_text("kind: image\nname: x\nheight: 0\nwidth: 5\nchannels: 2\n"
                    "value_range: [255, 0]\nlabels: [a, a]\ncolour: yes\n")
    with pytest.raises(SchemaError) as info:
        load_image_schema(path)
    message = str(info.value)
    assert message.startswith(str(path))
    for field in ("'height'", "'channels'", "'value_range'", "duplicates ['a']",
                  "unknown key 'colour'"):
        assert field in message


# ------------------------------------------------------------------------------- IDX

@pytest.mark.parametrize("gz", [True, False])
def test_idx_pair_from_a_directory_or_the_images_file(tmp_path, gz):
    schema, images, labels = tiny_schema(tmp_path), pixels(7), np.arange(7) % 3
    ext = ".gz" if gz else ""
    write_idx(tmp_path / f"train-images-idx3-ubyte{ext}", images[..., 0], gz)
    write_idx(tmp_path / f"train-labels-idx1-ubyte{ext}", labels, gz)
    write_idx(tmp_path / "t10k-images-idx3-ubyte.gz", images[:2, ..., 0])  # train- is taken
    for source in (tmp_path, tmp_path / f"train-images-idx3-ubyte{ext}"):
        data = ingest_images(source, schema)
        assert data.form == "idx" and data.images.dtype == np.uint8
        assert data.labels.dtype == np.int64
        np.testing.assert_array_equal(data.images, images)
        np.testing.assert_array_equal(data.labels, labels)


def test_bundled_demo_set_is_fashion_mnist():
    data = ingest_images(DEMO, load_image_schema(FASHION))
    assert data.images.shape == (5000, 28, 28, 1) and set(data.labels) == set(range(10))
    assert (DEMO / "COPYRIGHT").exists()


def test_bad_idx_files_are_named_with_the_fix(tmp_path):
    schema = tiny_schema(tmp_path)
    write_idx(tmp_path / "a-images-idx3-ubyte.gz", pixels(4)[..., 0])
    write_idx(tmp_path / "a-labels-idx1-ubyte.gz", np.array([0, 1, 7, 9]))
    message = error_of(lambda: ingest_images(tmp_path, schema))
    assert "a-labels-idx1-ubyte.gz: label 7 of image 2 is outside 0..2" in message
    assert "(2 in all)" in message and "declare more labels" in message
    with pytest.raises(DataError) as info:
        ingest_images(tmp_path, schema)
    # for Prefect: no value, position or count read from the private images
    assert "a label is outside the schema's labels" in info.value.public
    assert "label 7" not in info.value.public and "image 2" not in info.value.public
    assert "in all" not in info.value.public

    assert "not named like an IDX images file" in error_of(
        lambda: ingest_images(tmp_path / "a-labels-idx1-ubyte.gz", schema))

    write_idx(tmp_path / "a-images-idx3-ubyte.gz", np.zeros((4, 8, 8)))
    write_idx(tmp_path / "a-labels-idx1-ubyte.gz", np.zeros(4))
    assert "images are 8x8x1 (height x width x channels)" in error_of(
        lambda: ingest_images(tmp_path, schema))

    raw = gzip.decompress((tmp_path / "a-images-idx3-ubyte.gz").read_bytes())
    (tmp_path / "a-images-idx3-ubyte.gz").write_bytes(gzip.compress(raw[:-10]))  # truncated
    message = error_of(lambda: read_idx_array(tmp_path / "a-images-idx3-ubyte.gz"))
    assert "a-images-idx3-ubyte.gz: truncated" in message and "intact copy" in message
    (tmp_path / "a-images-idx3-ubyte.gz").write_bytes(b"not gzip at all")
    assert "a-images-idx3-ubyte.gz: cannot read" in error_of(
        lambda: ingest_images(tmp_path, schema))
    (tmp_path / "a-labels-idx1-ubyte.gz").unlink()
    assert "no labels file beside it" in error_of(lambda: ingest_images(tmp_path, schema))


def test_values_outside_the_declared_range_are_rejected(tmp_path):
    schema = tiny_schema(tmp_path, lo=0, hi=200)
    images = pixels(5)
    images[3, 0, 0, 0] = 250
    images[:3] = np.minimum(images[:3], 200)
    images[4] = 0
    np.savez(tmp_path / "set.npz", images=images, labels=np.zeros(5, int))
    message = error_of(lambda: ingest_images(tmp_path / "set.npz", schema))
    assert "set.npz: image 3 has pixel value 250 outside the schema's value_range [0, 200]" \
        in message and "tiny-1-0-200.yaml" in message


# -------------------------------------------------------------------- folder per class

def save(path, array, fmt=None):
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(array[..., 0] if array.shape[-1] == 1 else array).save(path, format=fmt)


def test_folder_per_class_of_png_and_jpeg(tmp_path):
    schema, images = tiny_schema(tmp_path), pixels(4)
    root = tmp_path / "set"
    save(root / "cat" / "0.png", images[0])
    save(root / "cat" / "1.png", images[1])
    save(root / "T-shirt_top" / "x.png", images[2])  # "/" in a label is "_" in its folder
    save(root / "dog" / "y.jpg", images[3])
    (root / "dog" / "notes.txt").write_text("skipped")
    data = ingest_images(root, schema)
    assert data.form == "folder" and data.images.shape == (4, 6, 5, 1)
    assert sorted(data.labels.tolist()) == [0, 0, 1, 2]
    np.testing.assert_array_equal(data.images[data.labels == 1][0], images[2])  # PNG lossless
    jpeg = data.images[data.labels == 2][0].astype(int)
    assert np.abs(jpeg - images[3]).mean() < 60  # JPEG is lossy, but it is that image


def test_bad_folders_and_files_are_all_reported_at_once(tmp_path):
    schema = tiny_schema(tmp_path)
    root = tmp_path / "set"
    save(root / "cat" / "ok.png", pixels(1)[0])
    save(root / "horse" / "h.png", pixels(1)[0])
    save(root / "cat" / "big.png", np.zeros((9, 9, 1), np.uint8))
    save(root / "cat" / "colour.png", pixels(1, channels=3)[0])
    (root / "dog").mkdir()
    (root / "dog" / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\nnot really")
    message = error_of(lambda: ingest_images(root, schema))
    assert "folder 'horse' is not one of the labels" in message and "cat, T-shirt_top" in message
    assert "cat/big.png: image is 9x9" in message
    assert "cat/colour.png: image has 3 channel(s) (mode RGB)" in message
    assert "dog/broken.png: cannot be decoded as PNG/JPEG" in message
    assert "remove the file" in message


# ------------------------------------------------------------------------------- NPZ

def test_npz_with_integer_or_string_labels_and_float_pixels(tmp_path):
    images, labels = pixels(6, channels=3), np.array([0, 1, 2, 2, 1, 0])
    rgb = tiny_schema(tmp_path, channels=3)
    np.savez(tmp_path / "ints.npz", images=images, labels=labels)
    np.savez(tmp_path / "names.npz", images=images,
             labels=np.array(rgb.labels)[labels])
    for name in ("ints.npz", "names.npz"):
        data = ingest_images(tmp_path / name, rgb)
        np.testing.assert_array_equal(data.images, images)
        np.testing.assert_array_equal(data.labels, labels)
    unit = tiny_schema(tmp_path, lo=0, hi=1)
    np.savez(tmp_path / "float.npz", images=pixels(6)[..., 0] / 255.0, labels=labels)
    np.testing.assert_array_equal(ingest_images(tmp_path / "float.npz", unit).images, pixels(6))


def test_bad_npz_files_are_named_with_the_fix(tmp_path):
    schema = tiny_schema(tmp_path)
    np.savez(tmp_path / "a.npz", pictures=pixels(2), labels=np.zeros(2))
    assert "a.npz: lacks array(s) ['images']" in error_of(
        lambda: ingest_images(tmp_path / "a.npz", schema))
    np.savez(tmp_path / "b.npz", images=pixels(3), labels=np.array(["cat", "cow", "dog"]))
    assert "b.npz: label 'cow' of image 1 is not one of the labels" in error_of(
        lambda: ingest_images(tmp_path / "b.npz", schema))
    np.savez(tmp_path / "c.npz", images=pixels(3, channels=3), labels=np.zeros(3, int))
    assert "c.npz: images are 6x5x3" in error_of(
        lambda: ingest_images(tmp_path / "c.npz", schema))
    (tmp_path / "d.npz").write_bytes(b"PK corrupt")
    assert "d.npz: cannot read as NPZ" in error_of(
        lambda: ingest_images(tmp_path / "d.npz", schema))
    assert "no such file" in error_of(lambda: ingest_images(tmp_path / "e.npz", schema))


# --------------------------------------------------------------------------- publish

def test_release_table_reads_back_in_pandas_pyarrow_and_duckdb(tmp_path):
    schema, images, labels = tiny_schema(tmp_path), pixels(9), np.arange(9) % 3
    table = image_table(images, labels, schema, {"data_set": "tiny-images", "rows": "9"})
    assert check_image_table(table, schema, 9).success
    # the checks are a Great Expectations suite over the images: a wrong declared height
    # fails the height column and what the PNGs decode to, by name
    taller = dataclasses.replace(schema, height=7)
    assert [n for n, ok, _ in check_image_table(table, taller, 9).checks if not ok] == [
        "height", "PNG decodes to the declared height"]
    sheet = contact_sheet(images, labels, schema)
    out = publish_table(table, tmp_path / "rel", extra_files={CONTACT_SHEET: sheet})
    data = out.data

    arrow = pq.read_table(data)
    assert arrow.schema.field("label").type == pa.dictionary(pa.int32(), pa.string())
    assert arrow.schema.field("image").type == pa.binary()
    frame = pd.read_parquet(data)
    assert list(frame.columns) == ["image", "width", "height", "mode", "label"]
    assert str(frame["label"].dtype) == "category"
    assert list(frame["label"].cat.categories) == list(schema.labels)
    assert frame["label"].tolist() == [schema.labels[i] for i in labels]
    assert set(frame["mode"]) == {"L"} and set(frame["width"]) == {5}
    for blob, image in zip(frame["image"], images):
        np.testing.assert_array_equal(decode_png(blob), image)  # PNG is lossless

    types = dict(duckdb.sql(f"select column_name, column_type from (describe select * from "
                            f"read_parquet('{data}'))").fetchall())
    assert types["image"] == "BLOB" and types["label"] == "VARCHAR"
    counts = duckdb.sql(f"select label, count(*) from read_parquet('{data}') group by label "
                        f"order by label").fetchall()
    assert counts == [("T-shirt/top", 3), ("cat", 3), ("dog", 3)]
    assert read_release_metadata(data)["schema_fingerprint"] == schema.fingerprint()
    with Image.open(out.path / CONTACT_SHEET) as im:
        assert im.format == "PNG" and im.height > 3 * 6


# ---------------------------------------------------------- end to end, real models

@pytest.fixture(scope="module")
def tiny_fashion(tmp_path_factory):
    """300 real Fashion-MNIST images of the bundled set, as an NPZ with string labels."""
    schema = load_image_schema(FASHION)
    data = ingest_images(DEMO, schema)
    path = tmp_path_factory.mktemp("tiny") / "fashion.npz"
    np.savez(path, images=data.images[:300], labels=np.array(schema.labels)[data.labels[:300]])
    return path


@pytest.mark.parametrize("synthesizer", ["dp-conv-gan", "dp-conv-vae"])
def test_synth_run_publishes_an_image_release(tiny_fashion, tmp_path, capsys, synthesizer):
    out = tmp_path / "release"
    args = ["run", "--schema", str(FASHION), "--input", str(tiny_fashion), "--epsilon", "10",
            "--delta", "1e-5", "--out", str(out), "--synthesizer", synthesizer, "--epochs",
            "1", "--batch-size", "100", "--rows", "40", "-q", "--ledger",
            str(tmp_path / "ledger.db")]
    code = main(args)
    stdout = capsys.readouterr().out
    assert code == 0 and "contact_sheet.png" in stdout and "40 images" in stdout
    assert sorted(p.name for p in out.iterdir()) == [CONTACT_SHEET, "data.parquet",
                                                     "manifest.json", "privacy_report.json",
                                                     "report.html", "validation.json"]
    page = (out / "report.html").read_text()  # the report shows the samples, offline
    assert "Privacy statement" in page and "data:image/png;base64," in page
    assert "http://" not in page and "https://" not in page
    report = json.loads((out / "privacy_report.json").read_text())
    assert report["epsilon"] <= 10 and report["delta"] == 1e-5
    assert report["synthesizer"] == synthesizer and report["data_set"] == "fashion-mnist"
    frame = pd.read_parquet(out / "data.parquet")
    assert len(frame) == 40 and set(frame["label"]) <= set(load_image_schema(FASHION).labels)
    assert decode_png(frame["image"][0]).shape == (28, 28, 1)
    meta = read_release_metadata(out / "data.parquet")
    assert meta["synthesizer"] == synthesizer and meta["validation"] == "passed 10 of 10 checks"
    checks = json.loads((out / "validation.json").read_text())["checks"]
    assert checks[-1]["check"] == "canary audit" and checks[-1]["success"]
    # the same run again publishes nothing new and spends nothing
    before = (out / "data.parquet").stat()
    assert main(args) == 0
    after = (out / "data.parquet").stat()
    assert (before.st_ino, before.st_mtime_ns) == (after.st_ino, after.st_mtime_ns)
    assert [e["state"] for e in Ledger(tmp_path / "ledger.db").history()] == ["committed"]


def test_synth_run_with_bad_images_exits_2_and_writes_nothing(tmp_path, capsys):
    np.savez(tmp_path / "bad.npz", images=np.zeros((5, 28, 28)), labels=np.full(5, 12))
    out = tmp_path / "release"
    code = main(["run", "--schema", str(FASHION), "--input", str(tmp_path / "bad.npz"),
                 "--epsilon", "1", "--out", str(out), "-q"])
    err = capsys.readouterr().err
    assert code == EXIT_BAD_INPUT and "bad.npz: label 12 of image 0 is outside 0..9" in err
    assert not out.exists()
    code = main(["run", "--schema", str(FASHION), "--input", str(tmp_path / "bad.npz"),
                 "--epsilon", "1", "--out", str(out), "--synthesizer", "dp-vae", "-q"])
    assert code == EXIT_BAD_INPUT and "dp-vae is for tables" in capsys.readouterr().err


def test_schema_check_knows_image_schemas(capsys):
    assert main(["schema", "check", str(FASHION)]) == 0
    assert "image 28x28x1, 10 labels" in capsys.readouterr().out


# ------------------------------------------------------------------------ metrics

def test_metrics_on_tiny_real_data():
    from synth.image_metrics import (
        cnn_accuracy,
        frechet_distance,
        frechet_local_cnn_distance,
        train_feature_cnn,
    )

    data = ingest_images(DEMO, load_image_schema(FASHION))
    train, test = slice(0, 600), slice(4600, 5000)
    acc = cnn_accuracy(data.images[train], data.labels[train], data.images[test],
                       data.labels[test], 10, epochs=2, seed=0)
    assert acc > 0.4  # chance is 0.1
    cnn = train_feature_cnn(data.images[train], data.labels[train], 10, epochs=1, seed=0)
    real = frechet_local_cnn_distance(cnn, data.images[test], data.images[1000:1400])
    noise = np.random.default_rng(0).integers(0, 256, (400, 28, 28, 1), dtype=np.uint8)
    assert real < frechet_local_cnn_distance(cnn, data.images[test], noise)

    from scipy.linalg import (
        sqrtm,  # the oracle for the eigenvalue form of Tr((S_a S_b)^1/2)
    )

    rng = np.random.default_rng(1)
    a, b = rng.normal(size=(500, 6)), rng.normal(size=(400, 6)) @ rng.normal(size=(6, 6)) + 1
    sa, sb = np.cov(a, rowvar=False), np.cov(b, rowvar=False)
    oracle = (((a.mean(0) - b.mean(0)) ** 2).sum() + np.trace(sa + sb)
              - 2 * np.trace(sqrtm(sa @ sb).real))
    assert frechet_distance(a, b) == pytest.approx(oracle, rel=1e-6)


def test_image_benchmark_runs_small(monkeypatch, capsys):
    """bench/images.py --small in process (a subprocess would re-import torch): every image
    synthesizer and train-on-real through both metrics on the bundled images."""
    from bench import images as bench

    monkeypatch.setattr(sys, "argv", ["bench/images.py", "--small", "--set", "latent_dim=8"])
    made = []
    make = bench.make_image_synthesizer
    monkeypatch.setattr(bench, "make_image_synthesizer",
                        lambda name, **kw: made.append(kw) or make(name, **kw))
    assert bench.main() == 0
    fits = [kw for kw in made if "seed" in kw]  # (the others ask for default parameters)
    assert len(fits) == 3 and all(kw["latent_dim"] == 8 for kw in fits)  # --set: every fit
    assert bench._setting("width=32") == ("width", 32)
    assert bench._setting("accountant=rdp") == ("accountant", "rdp")
    stdout = capsys.readouterr().out
    assert "| train on real |" in stdout and "FD (local CNN features)" in stdout
    for name in ("dp-conv-gan", "dp-conv-vae"):
        assert f"| {name} | 1 |" in stdout
    assert "Anchors" in stdout and not bench.RESULTS.with_suffix(".tmp").exists()
