"""Every loader refuses a malformed header, whatever field or byte is wrong, with a DataFormatError naming
the file: the IDX header (magic, dtype code, ndim, each dimension) of MNIST's images and labels, a CIFAR-10
record's label byte and its length, a cell of the bundled digits' CSV, the bundled plays' gzip header and
bytes, and a gzip header's magic and method. Files are written here, by an independent writer."""

from __future__ import annotations

import gzip
import struct
import tempfile
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import funcnn.data._digits as digits_module
import funcnn.data._shakespeare as shakespeare_module
from funcnn.data import DataFormatError, load_cifar10_binary, load_digits, load_mnist, load_shakespeare

N = 3  # images: a dimension no other equals, so that no single change keeps the product
GZIP_HEADER = 3  # magic (2 bytes) and compression method: the gzip header bytes that decide how it is read
GZIP_RESERVED = (0x20, 0x40, 0x80)  # the FLG byte's reserved bits (RFC 1952); its other bits and the rest of the
# header (time, extra flags, system) may hold any value


def _idx(arr: np.ndarray) -> bytes:
    """uint8 ``arr`` as IDX: 00 00, code 08, ndim, big-endian uint32 dimensions, the bytes."""
    return b"\0\0\x08" + bytes([arr.ndim]) + struct.pack(f">{arr.ndim}I", *arr.shape) + arr.tobytes()


def _mnist_files() -> dict[str, bytes]:
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, size=(N, 28, 28), dtype=np.uint8)
    labels = rng.integers(0, 10, size=N).astype(np.uint8)
    return {"train-images-idx3-ubyte": _idx(images), "train-labels-idx1-ubyte": _idx(labels)}


MNIST = _mnist_files()


def _refused_naming(load, path: Path) -> DataFormatError:
    with pytest.raises(DataFormatError) as error:
        load()
    assert error.value.path == str(path) and str(path) in str(error.value)
    return error.value


def _header_length(blob: bytes) -> int:
    return 4 + 4 * blob[3]


@settings(max_examples=150, deadline=None)
@given(name=st.sampled_from(sorted(MNIST)), gz=st.booleans(), data=st.data())
def test_mnist_refuses_any_changed_idx_header_byte(name, gz, data):
    blob = bytearray(MNIST[name])
    at = data.draw(st.integers(0, _header_length(blob) - 1), label="byte")
    blob[at] = data.draw(st.integers(0, 255).filter(lambda v: v != blob[at]), label="value")
    with tempfile.TemporaryDirectory() as folder:
        for other, content in MNIST.items():
            stored = bytes(blob) if other == name else content
            (Path(folder) / (other + (".gz" if gz else ""))).write_bytes(gzip.compress(stored) if gz else stored)
        _refused_naming(lambda: load_mnist(folder), Path(folder) / (name + (".gz" if gz else "")))


FIELDS = ("magic", "code", "ndim", "dim")


@settings(max_examples=150, deadline=None)
@given(name=st.sampled_from(sorted(MNIST)), field=st.sampled_from(FIELDS), data=st.data())
def test_mnist_refuses_any_wrong_idx_header_field(name, field, data):
    """A whole field replaced: the magic by any other two bytes, the code by any byte (int8, the one code of
    the same size, is not MNIST's uint8), ndim by any other, a dimension by any other uint32."""
    blob = bytearray(MNIST[name])
    ndim = blob[3]
    if field == "magic":
        blob[0:2] = data.draw(st.binary(min_size=2, max_size=2).filter(lambda b: b != b"\0\0"))
    elif field in ("code", "ndim"):
        at = 2 if field == "code" else 3
        blob[at] = data.draw(st.integers(0, 255).filter(lambda v: v != blob[at]))
    else:
        i = data.draw(st.integers(0, ndim - 1))
        old = struct.unpack(">I", blob[4 + 4 * i : 8 + 4 * i])[0]
        blob[4 + 4 * i : 8 + 4 * i] = struct.pack(">I", data.draw(st.integers(0, 2**32 - 1).filter(lambda v: v != old)))
    with tempfile.TemporaryDirectory() as folder:
        for other, content in MNIST.items():
            (Path(folder) / other).write_bytes(bytes(blob) if other == name else content)
        _refused_naming(lambda: load_mnist(folder), Path(folder) / name)


@settings(max_examples=60, deadline=None)
@given(name=st.sampled_from(sorted(MNIST)), reserved=st.booleans(), data=st.data())
def test_mnist_refuses_a_changed_gzip_header(name, reserved, data):
    blob = bytearray(gzip.compress(MNIST[name]))
    if reserved:
        blob[3] |= data.draw(st.sampled_from(GZIP_RESERVED))
    else:
        at = data.draw(st.integers(0, GZIP_HEADER - 1))
        blob[at] = data.draw(st.integers(0, 255).filter(lambda v: v != blob[at]))
    with tempfile.TemporaryDirectory() as folder:
        for other, content in MNIST.items():
            (Path(folder) / f"{other}.gz").write_bytes(bytes(blob) if other == name else gzip.compress(content))
        _refused_naming(lambda: load_mnist(folder), Path(folder) / f"{name}.gz")


RECORD = 1 + 3 * 32 * 32


def _cifar_folder(folder: Path, batch: bytes) -> None:
    rng = np.random.default_rng(0)
    for i in range(1, 6):
        records = rng.integers(0, 256, size=(2, RECORD), dtype=np.uint8)
        records[:, 0] = rng.integers(0, 10, size=2)
        (folder / f"data_batch_{i}.bin").write_bytes(records.tobytes())
    (folder / "data_batch_3.bin").write_bytes(batch)


@settings(max_examples=60, deadline=None)
@given(record=st.integers(0, 1), label=st.integers(10, 255))
def test_cifar_refuses_a_label_byte_outside_the_classes(record, label):
    """A record's header is its label byte: any value past 9 is refused, naming the file and the record."""
    batch = bytearray(np.zeros((2, RECORD), dtype=np.uint8).tobytes())
    batch[record * RECORD] = label
    with tempfile.TemporaryDirectory() as folder:
        _cifar_folder(Path(folder), bytes(batch))
        error = _refused_naming(lambda: load_cifar10_binary(folder), Path(folder) / "data_batch_3.bin")
    assert f"label {label} at index {record}" in error.found


@settings(max_examples=60, deadline=None)
@given(change=st.integers(-2 * RECORD, 2 * RECORD).filter(lambda k: k % RECORD != 0 or k == -2 * RECORD))
def test_cifar_refuses_a_file_that_is_not_whole_records(change):
    batch = np.zeros((2, RECORD), dtype=np.uint8).tobytes()
    batch = batch[:change] if change < 0 else batch + bytes(change)
    with tempfile.TemporaryDirectory() as folder:
        _cifar_folder(Path(folder), batch)
        _refused_naming(lambda: load_cifar10_binary(folder), Path(folder) / "data_batch_3.bin")


class _Resource:
    """A stand-in for ``importlib.resources.files(package)`` holding one file's bytes."""

    def __init__(self, content: bytes) -> None:
        self.content = content

    def joinpath(self, name: str) -> _Resource:
        return self

    def read_bytes(self) -> bytes:
        return self.content


@pytest.fixture
def bundled(monkeypatch):
    """``bundled(module, content)``: the module's bundled file replaced by ``content`` (its cache cleared
    before and after, so that other tests read the real file)."""
    cached = {digits_module: digits_module._raw, shakespeare_module: shakespeare_module.shakespeare_text}

    def replace(module, content: bytes) -> None:
        cached[module].cache_clear()
        monkeypatch.setattr(module.resources, "files", lambda package: _Resource(content))

    yield replace
    monkeypatch.undo()
    for function in cached.values():
        function.cache_clear()


DIGITS_CSV = gzip.decompress((Path(digits_module.__file__).parent / digits_module.DIGITS_RESOURCE).read_bytes()).decode(
    "ascii"
)
BAD_PIXELS = ("-1", "17", "x", "", "1.5", "1e9")
BAD_LABELS = ("-1", "10", "x", "", "2.5")


FIXTURE_ONCE = [HealthCheck.function_scoped_fixture]  # ``bundled`` replaces the file in every example


@settings(max_examples=40, deadline=None, suppress_health_check=FIXTURE_ONCE)
@given(data=st.data())
def test_the_digits_refuse_any_wrong_csv_field(bundled, data):
    """Each row is 64 pixels in 0..16 and a label in 0..9; one cell made wrong, or a row given a cell more
    or less, is refused naming the bundled file."""
    rows = [line.split(",") for line in DIGITS_CSV.splitlines()]
    r = data.draw(st.integers(0, len(rows) - 1), label="row")
    change = data.draw(st.sampled_from(("pixel", "label", "extra", "missing")), label="change")
    if change == "pixel":
        rows[r][data.draw(st.integers(0, 63))] = data.draw(st.sampled_from(BAD_PIXELS))
    elif change == "label":
        rows[r][64] = data.draw(st.sampled_from(BAD_LABELS))
    elif change == "extra":
        rows[r].append("0")
    else:
        rows[r].pop()
    bundled(digits_module, gzip.compress("\n".join(",".join(row) for row in rows).encode("ascii")))
    _refused_naming(load_digits, Path(f"funcnn.data/{digits_module.DIGITS_RESOURCE}"))


PLAYS = (Path(shakespeare_module.__file__).parent / shakespeare_module.SHAKESPEARE_RESOURCE).read_bytes()


@settings(max_examples=20, deadline=None, suppress_health_check=FIXTURE_ONCE)
@given(data=st.data())
def test_the_plays_refuse_a_changed_gzip_header_a_non_ascii_byte_or_another_length(bundled, data):
    change = data.draw(st.sampled_from(("gzip header", "non-ASCII", "length")))
    if change == "gzip header":
        blob = bytearray(PLAYS)
        at = data.draw(st.integers(0, GZIP_HEADER - 1))
        blob[at] = data.draw(st.integers(0, 255).filter(lambda v: v != blob[at]))
    else:
        text = bytearray(gzip.decompress(PLAYS))
        at = data.draw(st.integers(0, len(text) - 1))
        if change == "non-ASCII":
            text[at] = data.draw(st.integers(128, 255))
        else:
            del text[at]
        blob = bytearray(gzip.compress(bytes(text), compresslevel=1))
    bundled(shakespeare_module, bytes(blob))
    _refused_naming(load_shakespeare, Path(f"funcnn.data/{shakespeare_module.SHAKESPEARE_RESOURCE}"))
