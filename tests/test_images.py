"""The image data path: schema, ingest of each form (IDX, folder of PNG/JPEG, NPZ) with bad
inputs, the Parquet release read back by pandas, pyarrow and DuckDB, the contact sheet, a
tiny release through ``synth run`` with the real models, and the metrics on tiny data."""

import dataclasses
import gzip
import io
import json
import os
import re
import struct
import sys
import time
import zipfile
import zlib

import duckdb
import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from PIL import Image

from pipelines.cli import EXIT_BAD_INPUT, main
from pipelines.errors import DataError
from pipelines.image_format import decode_png
from pipelines.image_publish import CONTACT_SHEET, contact_sheet, image_table
from pipelines.images import image_set_fingerprint, ingest_images, read_idx_array
from pipelines.ledger import Ledger
from pipelines.publish import publish_table, read_release_metadata
from pipelines.validate.images import check_image_table
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


# ------------------------------------------------------------------- hostile inputs
# Each builder writes one malformed or hostile input under a folder and returns the path to
# give as --input. Every one must be refused in one short line, quickly, before anything big
# is decoded or allocated, and without writing anything.

def png_bytes(height=6, width=5, mode="L", **options) -> bytes:
    buffer = io.BytesIO()
    image = Image.new(mode, (width, height))
    image.save(buffer, "PNG", **options)
    return buffer.getvalue()


def claimed_size(blob: bytes, height: int, width: int) -> bytes:
    """A PNG whose IHDR claims another size (its CRC fixed): nothing else changes."""
    blob = bytearray(blob)
    blob[16:24] = struct.pack(">II", width, height)
    blob[29:33] = struct.pack(">I", zlib.crc32(bytes(blob[12:29])))
    return bytes(blob)


def many_chunks(blob: bytes, n: int) -> bytes:
    """A PNG with ``n`` empty ancillary chunks after its header (cheap to store, each parsed
    in Python by PIL)."""
    chunk = struct.pack(">I", 0) + b"abCd" + struct.pack(">I", zlib.crc32(b"abCd"))
    return blob[:33] + chunk * n + blob[33:]


def npy_header(shape, descr="|u1") -> bytes:
    buffer = io.BytesIO()
    np.lib.format.write_array_header_1_0(
        buffer, {"descr": descr, "fortran_order": False, "shape": shape})
    return buffer.getvalue()


def idx_blob(dims, body=b"") -> bytes:
    return b"\0\0\x08" + bytes([len(dims)]) + struct.pack(f">{len(dims)}I", *dims) + body


def files(root, entries):
    """``root`` holding ``entries`` (relative name -> bytes, or a callable making it)."""
    root.mkdir(parents=True, exist_ok=True)
    for name, content in entries.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        content(path) if callable(content) else path.write_bytes(content)
    return root


def npz_of_members(path, members):
    with zipfile.ZipFile(path, "w") as archive:
        for name, blob in members.items():
            archive.writestr(name, blob)
    return path


def transparent_palette(path):
    Image.new("P", (5, 6)).save(path, "PNG", transparency=0)


def jpeg(path):
    Image.new("L", (5, 6)).save(path, "JPEG")


def link(target):
    return lambda path: path.symlink_to(target)


def empty_label_folder(root):
    files(root, {"cat/a.png": png_bytes()})
    (root / "dog").mkdir()
    return root


def zip_bomb(root):
    """An NPZ of 21 MB of zeros that stores in about 20 KB (ratio about 1,000)."""
    root.mkdir()
    n = 700_000
    np.savez_compressed(root / "bomb.npz", images=np.zeros((n, 6, 5), np.uint8),
                        labels=np.zeros(n, np.uint8))
    return root / "bomb.npz"


def idx_pair(root, images, labels, gz=True):
    suffix = ".gz" if gz else ""
    pack = gzip.compress if gz else bytes
    return files(root, {f"train-images-idx3-ubyte{suffix}": pack(images),
                        f"train-labels-idx1-ubyte{suffix}": pack(labels)})


HUGE = 10**12 // 30  # images of 6x5 bytes: 10^12 bytes declared
# (id, builder of the input, words the error must have, environment, whether pixels decode)
HOSTILE = [
    ("png-bomb", lambda r: files(r, {"cat/a.png": claimed_size(png_bytes(), 50_000, 50_000)}),
     "decompression bomb", {}, False),
    ("png-past-pixel-limit", lambda r: files(r, {"cat/a.png": claimed_size(png_bytes(), 9000,
                                                                           9000)}),
     "9000x9000 pixels, more than the limit of 67,108,864", {}, False),
    ("png-pixel-limit-lowered", lambda r: files(r, {"cat/a.png": png_bytes()}),
     "6x5 pixels, more than the limit of 20", {"SYNTH_MAX_IMAGE_PIXELS": "20"}, False),
    ("png-header-not-schema-size", lambda r: files(r, {"cat/a.png": claimed_size(
        png_bytes(), 4000, 4000)}), "cat/a.png: image is 4000x4000", {}, False),
    ("png-of-empty-chunks", lambda r: files(r, {"cat/a.png": many_chunks(png_bytes(), 2000)}),
     "cat/a.png: holds more than 1,000 PNG chunks", {}, False),
    ("png-truncated", lambda r: files(r, {"cat/a.png": png_bytes()[:45]}),
     "cat/a.png: cannot be decoded as PNG/JPEG", {}, True),
    ("text-named-png", lambda r: files(r, {"cat/a.png": b"just some text\n"}),
     "cat/a.png: cannot be decoded as PNG/JPEG", {}, False),
    ("jpeg-named-png", lambda r: files(r, {"cat/a.png": jpeg}),
     "cat/a.png: is a JPEG file, not PNG", {}, False),
    ("png-16-bit", lambda r: files(r, {"cat/a.png": png_bytes(mode="I;16")}),
     "PIL mode I;16", {}, False),
    ("png-palette-alpha", lambda r: files(r, {"cat/a.png": transparent_palette}),
     "PIL mode P with transparency", {}, False),
    ("symlink-folder", lambda r: files(r, {"cat/a.png": png_bytes(), "dog": link("/usr/lib")}),
     "dog: is a symbolic link (to /usr/lib)", {}, False),
    ("symlink-file", lambda r: files(r, {"cat/a.png": png_bytes(),
                                         "cat/b.png": link("/etc/passwd")}),
     "b.png: is a symbolic link (to /etc/passwd)", {}, False),
    ("fifo", lambda r: files(r, {"cat/a.png": png_bytes(), "cat/b.png": os.mkfifo}),
     "b.png: is not a regular file (a FIFO", {}, False),
    ("empty-folder", lambda r: files(r, {}), "holds no images", {}, False),
    ("empty-label-folder", empty_label_folder,
     "label folder 'dog' holds no PNG/JPEG files", {}, True),
    ("too-many-files", lambda r: files(r, {f"cat/{i}.png": png_bytes() for i in range(5)}),
     "holds more than 3 images", {"SYNTH_MAX_IMAGES": "3"}, False),
    ("folder-decoded-bytes", lambda r: files(r, {f"cat/{i}.png": png_bytes() for i in range(5)}),
     "more than the limit of 100 bytes", {"SYNTH_MAX_IMAGE_BYTES": "100"}, False),
    ("npz-header-bomb", lambda r: npz_of_members(files(r, {}) / "a.npz", {
        "images.npy": npy_header((HUGE, 6, 5)), "labels.npy": npy_header((HUGE,), "<i8")}),
     "holds more than 10,000,000 images", {}, False),
    ("npz-header-past-bytes", lambda r: npz_of_members(files(r, {}) / "a.npz", {
        "images.npy": npy_header((1000, 6, 5)), "labels.npy": npy_header((1000,), "<i8")}),
     "more than the limit of 10,000 bytes", {"SYNTH_MAX_IMAGE_BYTES": "10000"}, False),
    ("npz-zip-bomb", zip_bomb, "expands 1,0", {}, False),
    ("npz-pickle", lambda r: files(r, {"a.npz": lambda p: np.savez(
        p, images=np.zeros((2, 6, 5), np.uint8), labels=np.array(["cat", None], object))})
     / "a.npz", "array 'labels' holds Python objects", {}, False),
    ("npz-no-images", lambda r: files(r, {"a.npz": lambda p: np.savez(
        p, pictures=np.zeros((2, 6, 5), np.uint8), labels=np.zeros(2, int))}) / "a.npz",
     "lacks array(s) ['images']", {}, False),
    ("npz-label-count", lambda r: files(r, {"a.npz": lambda p: np.savez(
        p, images=np.zeros((4, 6, 5), np.uint8), labels=np.zeros(3, int))}) / "a.npz",
     "'labels' has shape (3,), expected (4,)", {}, False),
    ("npz-truncated-member", lambda r: npz_of_members(files(r, {}) / "a.npz", {
        "images.npy": npy_header((2, 6, 5)) + bytes(10),
        "labels.npy": npy_header((2,), "<i8") + bytes(16)}),
     "array 'images' holds 10 data bytes, its header declares 60", {}, False),
    ("npz-many-members", lambda r: npz_of_members(files(r, {}) / "a.npz", {
        "images.npy": npy_header((2, 6, 5)) + bytes(60), "labels.npy": npy_header((2,)) + bytes(2),
        **{f"x{i}": b"" for i in range(1001)}}), "holds more than 1,000 members", {}, False),
    ("npz-not-a-zip", lambda r: files(r, {"a.npz": b"PK\x03\x04 and then nothing"}) / "a.npz",
     "cannot read as NPZ", {}, False),
    ("idx-gzip-bomb", lambda r: idx_pair(r, idx_blob((700_000, 6, 5), bytes(21_000_000)),
                                         idx_blob((700_000,), bytes(700_000))),
     "its gzip stream expands 1,0", {}, False),
    ("idx-header-bomb", lambda r: idx_pair(r, idx_blob((2**32 - 1, 4096, 4096)),
                                           idx_blob((2**32 - 1,)), gz=False),
     "holds more than 10,000,000 images", {}, False),
    ("idx-gzip-past-its-header", lambda r: idx_pair(r, idx_blob((2, 6, 5), bytes(20_000_000)),
                                                    idx_blob((2,), bytes(2))),
     "more data bytes than the 60 its header declares", {}, True),
    ("idx-fifo", lambda r: files(r, {"train-images-idx3-ubyte": os.mkfifo,
                                     "train-labels-idx1-ubyte": idx_blob((2,), bytes(2))}),
     "train-images-idx3-ubyte: is not a regular file", {}, False),
    ("idx-labels-symlink", lambda r: files(r, {
        "train-images-idx3-ubyte": idx_blob((2, 6, 5), bytes(60)),
        "train-labels-idx1-ubyte": link("/etc/passwd")}),
     "train-labels-idx1-ubyte: is a symbolic link", {}, False),
]


def tree_state(root):
    """Every entry under ``root`` (links not followed) with its size and modification time."""
    state = {}
    for folder, dirs, names in os.walk(root):
        for name in dirs + names:
            info = os.lstat(os.path.join(folder, name))
            state[os.path.relpath(os.path.join(folder, name), root)] = (info.st_size,
                                                                         info.st_mtime_ns)
    return state


@pytest.fixture
def decodes(monkeypatch):
    """Records each decode of pixels: a PNG/JPEG body, an NPZ array, an IDX body."""
    from PIL import ImageFile

    from pipelines.images import idx

    calls = []

    def spy(owner, name):
        real = getattr(owner, name)
        monkeypatch.setattr(owner, name, lambda *a, **k: calls.append(name) or real(*a, **k))

    spy(ImageFile.ImageFile, "load")
    spy(np.lib.format, "read_array")
    spy(idx.IdxFile, "body")
    return calls


@pytest.mark.parametrize("build, expected, env, decoded", [h[1:] for h in HOSTILE],
                         ids=[h[0] for h in HOSTILE])
def test_hostile_input_is_one_line_before_anything_big_is_decoded(
        tmp_path, monkeypatch, decodes, build, expected, env, decoded):
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    schema = tiny_schema(tmp_path)
    source = build(tmp_path / "input")
    before = tree_state(tmp_path)
    decodes.clear()
    start = time.perf_counter()
    with pytest.raises(DataError) as info:
        image_set_fingerprint(source)  # what `synth run` reads before it reserves budget
        ingest_images(source, schema)
    assert time.perf_counter() - start < 2
    assert expected in str(info.value)
    for line in (str(info.value), info.value.public):
        assert "\n" not in line and len(line) <= 400
    # the public line names no image index, count or size read from the images
    assert not re.search(r"image \d|in all\)|\d data bytes|expands \d", info.value.public)
    assert bool(decodes) == decoded
    assert tree_state(tmp_path) == before  # nothing written


@pytest.mark.parametrize("case", ["png-bomb", "symlink-folder", "npz-header-bomb",
                                  "npz-zip-bomb", "idx-fifo"])
def test_synth_run_refuses_a_hostile_input_with_exit_2_and_one_line(tmp_path, capsys, case):
    _, build, expected, _, _ = next(h for h in HOSTILE if h[0] == case)
    schema = tmp_path / "tiny.yaml"
    schema.write_text(TINY.format(channels=1, lo=0, hi=255))
    out, ledger = tmp_path / "release", tmp_path / "ledger.db"
    code = main(["run", "--schema", str(schema), "--input", str(build(tmp_path / "input")),
                 "--epsilon", "1", "--out", str(out), "-q", "--ledger", str(ledger)])
    lines = capsys.readouterr().err.splitlines()
    assert code == EXIT_BAD_INPUT and len(lines) == 1 and expected in lines[0]
    assert len(lines[0]) <= len("error: ") + 400
    assert not out.exists()
    if ledger.exists():  # a reservation made before the images were read is cancelled
        assert {e["state"] for e in Ledger(ledger).history()} <= {"cancelled"}


def test_input_may_be_a_link_and_palette_pngs_decode(tmp_path):
    """The input path itself may be a symbolic link (only links inside it are refused);
    a palette PNG without transparency is RGB; hidden entries are ignored."""
    schema = tiny_schema(tmp_path, channels=3)
    palette = Image.fromarray(pixels(1, channels=3)[0]).quantize(8)
    root = tmp_path / "set"
    (root / "cat").mkdir(parents=True)
    palette.save(root / "cat" / "a.png")
    (root / "cat" / ".hidden.png").symlink_to("/etc/passwd")
    (tmp_path / "link").symlink_to(root)
    data = ingest_images(tmp_path / "link", schema)
    np.testing.assert_array_equal(data.images[0], np.asarray(palette.convert("RGB")))
    assert image_set_fingerprint(tmp_path / "link") == image_set_fingerprint(root)


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

    monkeypatch.setattr(sys, "argv", ["bench/images.py", "--small", "--set", "latent_dim=8",
                                      "--set", "accountant=rdp"])  # quicker than prv
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
