"""Tests for funcnn.data: bundled digits, IDX / MNIST and CIFAR-10 binary readers.

IDX and CIFAR files are written here, by independent writers, into temporary
folders; nothing is downloaded.
"""

from __future__ import annotations

import csv
import dataclasses
import gzip
import hashlib
import io
import struct
import tempfile
from importlib import resources
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from funcnn.data import (
    DataFormatError,
    Dataset,
    Split,
    load_cifar10_binary,
    load_digits,
    load_idx,
    load_mnist,
)

# ---------------------------------------------------------------- helpers

# IDX dtype codes, written out independently of the implementation's table.
IDX_CODES = {
    np.dtype("u1"): 0x08,
    np.dtype("i1"): 0x09,
    np.dtype("i2"): 0x0B,
    np.dtype("i4"): 0x0C,
    np.dtype("f4"): 0x0D,
    np.dtype("f8"): 0x0E,
}

# sha256 of sklearn 1.9.1's sklearn/datasets/data/digits.csv.gz
DIGITS_SHA256 = "09f66e6debdee2cd2b5ae59e0d6abbb73fc2b0e0185d2e1957e9ebb51e23aa22"
# sha256 of np.random.default_rng(0).permutation(1797) as little-endian int64,
# recorded when the split was fixed: guards against a NumPy stream change.
PERM_SHA256 = "14b7f6bc58ce844efd500d56ca64ce44abff6e3dd1d9b8d2a6d11825767e38d3"


def idx_bytes(arr: np.ndarray, code: int | None = None, magic: bytes = b"\0\0") -> bytes:
    """Serialise ``arr`` as IDX (big-endian), optionally with a forced code / magic."""
    arr = np.asarray(arr)
    if code is None:
        code = IDX_CODES[arr.dtype.newbyteorder("=")]
    header = magic + bytes([code, arr.ndim]) + b"".join(struct.pack(">I", d) for d in arr.shape)
    return header + arr.astype(arr.dtype.newbyteorder(">")).tobytes()


def write(path: Path, data: bytes, gz: bool = False) -> Path:
    path.write_bytes(gzip.compress(data) if gz else data)
    return path


def cifar_bytes(x: np.ndarray, y: np.ndarray) -> bytes:
    """Serialise uint8 images (N, 3, 32, 32) and labels (N,) as CIFAR-10 binary records."""
    out = bytearray()
    for img, lab in zip(x, y):
        out.append(int(lab))
        out += img.astype(np.uint8).tobytes(order="C")
    return bytes(out)


def assert_names(excinfo: pytest.ExceptionInfo, path: Path) -> None:
    assert str(path) in str(excinfo.value), f"{path} not named in: {excinfo.value}"


def raw_digits() -> np.ndarray:
    """The bundled csv parsed with the csv module (independent of the loader)."""
    data = resources.files("funcnn.data").joinpath("digits.csv.gz").read_bytes()
    rows = list(csv.reader(io.StringIO(gzip.decompress(data).decode("ascii"))))
    return np.array(rows, dtype=np.int64)


def rows_sorted(a: np.ndarray) -> np.ndarray:
    return a[np.lexsort(a.T[::-1])]


# ---------------------------------------------------------------- digits


def test_digits_file_is_sklearn_copy_unchanged():
    data = resources.files("funcnn.data").joinpath("digits.csv.gz").read_bytes()
    assert hashlib.sha256(data).hexdigest() == DIGITS_SHA256


def test_digits_license_names_sources():
    text = resources.files("funcnn.data").joinpath("DIGITS_LICENSE.md").read_text("utf-8")
    for needle in ("Alpaydin", "Kaynak", "CC BY 4.0", "BSD 3-Clause", "scikit-learn developers", "unchanged"):
        assert needle in text, needle


def test_digits_shapes_counts_dtypes():
    s = load_digits()
    assert isinstance(s, Split)
    for part, n in ((s.train, 1197), (s.val, 300), (s.test, 300)):
        assert isinstance(part, Dataset)
        assert len(part) == n
        assert part.x.shape == (n, 1, 8, 8)
        assert part.y.shape == (n,)
        assert part.x.dtype == np.float32
        assert part.y.dtype == np.int64


def test_digits_value_and_label_range():
    s = load_digits()
    for part in (s.train, s.val, s.test):
        assert part.x.min() >= 0.0 and part.x.max() <= 1.0
        # scaled by exactly 1/16: every value times 16 is an integer 0..16
        assert np.array_equal(part.x * 16, np.round(part.x * 16))
        assert part.y.min() >= 0 and part.y.max() <= 9
    assert s.train.x.max() == 1.0 and s.train.x.min() == 0.0
    assert set(np.unique(s.train.y)) == set(range(10))


def test_digits_dtype_argument():
    s = load_digits(np.float64)
    assert s.val.x.dtype == np.float64
    assert np.array_equal(s.val.x, load_digits().val.x.astype(np.float64))
    with pytest.raises(ValueError, match="floating"):
        load_digits(np.int32)


def test_digits_split_identical_across_calls_and_fresh_arrays():
    a, b = load_digits(), load_digits()
    for pa, pb in ((a.train, b.train), (a.val, b.val), (a.test, b.test)):
        assert np.array_equal(pa.x, pb.x)
        assert np.array_equal(pa.y, pb.y)
    a.train.x[...] = -1.0  # mutating one result must not leak into the next
    assert load_digits().train.x.min() >= 0.0


def test_digits_parts_partition_the_file():
    raw = raw_digits()
    assert raw.shape == (1797, 65)
    s = load_digits()
    rows = np.concatenate(
        [
            np.column_stack([(p.x.reshape(len(p), 64) * 16).round().astype(np.int64), p.y])
            for p in (s.train, s.val, s.test)
        ]
    )
    # same multiset of rows: every image used exactly once across the three parts
    assert rows.shape == raw.shape
    assert np.array_equal(rows_sorted(rows), rows_sorted(raw))


def test_digits_split_is_default_rng0_permutation_pinned():
    raw = raw_digits()
    perm = np.random.default_rng(0).permutation(1797)
    # pinned: if NumPy ever changes this stream, the split would change silently
    assert hashlib.sha256(perm.astype("<i8").tobytes()).hexdigest() == PERM_SHA256
    assert len(set(perm[:1197]) | set(perm[1197:1497]) | set(perm[1497:])) == 1797
    s = load_digits()
    for part, idx in ((s.train, perm[:1197]), (s.val, perm[1197:1497]), (s.test, perm[1497:])):
        assert np.array_equal(part.y, raw[idx, 64])
        assert np.array_equal(part.x.reshape(len(part), 64) * 16, raw[idx, :64])


def test_dataset_type():
    d = Dataset(np.zeros((3, 2)), np.zeros(3, dtype=np.int64))
    assert len(d) == 3
    with pytest.raises(dataclasses.FrozenInstanceError):
        d.x = np.ones((3, 2))  # type: ignore[misc]
    with pytest.raises(ValueError):
        Dataset(np.zeros((3, 2)), np.zeros(4, dtype=np.int64))
    with pytest.raises(ValueError):
        Dataset(np.zeros((3, 2)), np.zeros((3, 1), dtype=np.int64))


# ---------------------------------------------------------------- IDX

idx_arrays = st.sampled_from(sorted(IDX_CODES, key=str)).flatmap(
    lambda dt: hnp.arrays(dt, hnp.array_shapes(min_dims=1, max_dims=4, min_side=0, max_side=5))
)


@settings(max_examples=80, deadline=None)
@given(arr=idx_arrays, gz=st.booleans(), suffix=st.sampled_from(["", ".gz", ".idx"]))
def test_idx_round_trip(arr, gz, suffix):
    with tempfile.TemporaryDirectory() as d:
        # ".gz" name always means gzipped; otherwise gzip is found by magic bytes
        path = write(Path(d) / f"a{suffix}", idx_bytes(arr), gz=gz or suffix == ".gz")
        out = load_idx(path)
    assert out.shape == arr.shape
    assert out.dtype == arr.dtype.newbyteorder("=")
    assert out.dtype.isnative
    np.testing.assert_array_equal(out, arr)  # NaNs compare equal here
    out[...] = 0  # result must be writable


def test_idx_big_endian_values(tmp_path):
    # hand-written file: int16 1-D [1, -2], bytes 00 01 ff fe
    path = write(tmp_path / "x", b"\0\0\x0b\x01" + b"\0\0\0\x02" + b"\x00\x01\xff\xfe")
    assert load_idx(path).tolist() == [1, -2]


@settings(max_examples=60, deadline=None)
@given(arr=idx_arrays, gz=st.booleans(), data=st.data())
def test_idx_any_truncation_raises_naming_file(arr, gz, data):
    blob = idx_bytes(arr)
    stored = gzip.compress(blob) if gz else blob
    cut = data.draw(st.integers(0, len(stored) - 1))
    with tempfile.TemporaryDirectory() as d:
        path = write(Path(d) / ("t.gz" if gz else "t"), stored[:cut])
        with pytest.raises(ValueError) as ei:
            load_idx(path)
    assert_names(ei, path)
    assert isinstance(ei.value, DataFormatError)


GOOD = np.arange(6, dtype=np.uint8).reshape(2, 3)


@pytest.mark.parametrize(
    "name, blob, gz, pattern",
    [
        ("bad_magic", idx_bytes(GOOD, magic=b"\x01\x00"), False, r"expected IDX magic.*found 01 00"),
        ("bad_magic2", idx_bytes(GOOD, magic=b"\x00\x08"), True, r"expected IDX magic.*found 00 08"),
        ("bad_code", idx_bytes(GOOD, code=0x0A), False, r"dtype code.*found 0x0A"),
        ("bad_code_gz", idx_bytes(GOOD, code=0x07), True, r"dtype code.*found 0x07"),
        ("short", b"\0\0\x08", False, r"at least 4 bytes.*found 3 bytes"),
        ("short_dims", b"\0\0\x08\x02\0\0\0\x02\0\0", False, r"12-byte IDX header.*found 10"),
        ("too_few", idx_bytes(GOOD)[:-1], False, r"expected 6 data bytes.*found 5"),
        ("too_many", idx_bytes(GOOD) + b"\0", True, r"expected 6 data bytes.*found 7"),
        ("f4_size", idx_bytes(np.zeros(3, np.float32))[:-2], False, r"expected 12 data bytes.*found 10"),
        ("broken.gz", gzip.compress(idx_bytes(GOOD))[:-5], False, r"gzip"),
        ("plain_named.gz", idx_bytes(GOOD), False, r"gzip"),
    ],
)
def test_idx_malformed(tmp_path, name, blob, gz, pattern):
    path = write(tmp_path / name, blob, gz=gz)
    with pytest.raises(DataFormatError, match=pattern) as ei:
        load_idx(path)
    assert isinstance(ei.value, ValueError)
    assert_names(ei, path)
    assert ei.value.path == str(path)


def gzip_bomb(path: Path, header_shape: tuple[int, ...], zero_bytes: int) -> Path:
    """An IDX header for uint8 ``header_shape`` followed by ``zero_bytes`` zeros, gzipped (1000:1)."""
    with gzip.open(path, "wb") as f:
        f.write(b"\0\0\x08" + bytes([len(header_shape)]) + struct.pack(f">{len(header_shape)}I", *header_shape))
        for _ in range(zero_bytes // 2**20):
            f.write(bytes(2**20))
    return path


def test_idx_gzip_bomb_is_refused_after_reading_what_the_header_promises(tmp_path):
    import tracemalloc

    path = gzip_bomb(tmp_path / "train-images-idx3-ubyte.gz", (20, 28, 28), 64 * 2**20)
    assert path.stat().st_size < 2**20
    tracemalloc.start()
    with pytest.raises(
        DataFormatError, match=r"expected 15680 data bytes for shape \(20, 28, 28\) of uint8, found 15681 or more"
    ):
        load_idx(path)
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    assert peak < 2**20  # not the 64 MiB the stream inflates to


def test_idx_missing_file(tmp_path):
    path = tmp_path / "nope-idx1-ubyte"
    with pytest.raises(FileNotFoundError) as ei:
        load_idx(path)
    assert_names(ei, path)


# ---------------------------------------------------------------- MNIST


def make_mnist(folder: Path, kind: str, n: int, gz: bool, seed: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    x = rng.integers(0, 256, size=(n, 28, 28), dtype=np.uint8)
    x[0, 0, 0], x[-1, -1, -1] = 0, 255
    y = rng.integers(0, 10, size=n).astype(np.uint8)
    prefix = {"train": "train", "test": "t10k"}[kind]
    ext = ".gz" if gz else ""
    write(folder / f"{prefix}-images-idx3-ubyte{ext}", idx_bytes(x), gz=gz)
    write(folder / f"{prefix}-labels-idx1-ubyte{ext}", idx_bytes(y), gz=gz)
    return x, y


@pytest.mark.parametrize("gz", [False, True])
def test_mnist_round_trip(tmp_path, gz):
    xtr, ytr = make_mnist(tmp_path, "train", 7, gz, seed=1)
    xte, yte = make_mnist(tmp_path, "test", 4, gz, seed=2)
    for kind, x, y in (("train", xtr, ytr), ("test", xte, yte)):
        d = load_mnist(tmp_path, kind)
        assert isinstance(d, Dataset) and len(d) == len(y)
        assert d.x.shape == (len(y), 1, 28, 28) and d.x.dtype == np.float32
        assert d.y.dtype == np.int64
        assert d.x.min() == 0.0 and d.x.max() == 1.0
        np.testing.assert_array_equal(d.x[:, 0], x.astype(np.float32) / np.float32(255))
        np.testing.assert_array_equal(d.y, y.astype(np.int64))
    assert load_mnist(str(tmp_path), "test", dtype=np.float64).x.dtype == np.float64


def test_mnist_rejects_bad_kind(tmp_path):
    make_mnist(tmp_path, "train", 2, False, seed=0)
    with pytest.raises(ValueError, match="kind"):
        load_mnist(tmp_path, "val")


def test_mnist_missing_labels_file(tmp_path):
    make_mnist(tmp_path, "train", 2, False, seed=0)
    (tmp_path / "train-labels-idx1-ubyte").unlink()
    with pytest.raises(FileNotFoundError) as ei:
        load_mnist(tmp_path, "train")
    assert_names(ei, tmp_path / "train-labels-idx1-ubyte")


def _overwrite(folder: Path, name: str, arr: np.ndarray) -> Path:
    return write(folder / name, idx_bytes(arr))


@pytest.mark.parametrize(
    "name, arr, pattern",
    [
        ("train-labels-idx1-ubyte", np.zeros(3, np.uint8), r"expected 5 labels.*found 3 labels"),
        (
            "train-labels-idx1-ubyte",
            np.array([0, 1, 10, 2, 3], np.uint8),
            r"labels in 0\.\.9.*found label 10 at index 2",
        ),
        ("train-labels-idx1-ubyte", np.zeros(5, np.int32), r"uint8 labels.*found int32"),
        (
            "train-images-idx3-ubyte",
            np.zeros((5, 27, 28), np.uint8),
            r"\(N, 28, 28\).*found uint8 of shape \(5, 27, 28\)",
        ),
        ("train-images-idx3-ubyte", np.zeros((5, 28, 28), np.int16), r"uint8 images.*found int16"),
    ],
)
def test_mnist_malformed(tmp_path, name, arr, pattern):
    make_mnist(tmp_path, "train", 5, False, seed=0)
    path = _overwrite(tmp_path, name, arr)
    with pytest.raises(DataFormatError, match=pattern) as ei:
        load_mnist(tmp_path, "train")
    assert_names(ei, path)


# ---------------------------------------------------------------- CIFAR-10


def make_cifar(folder: Path, kind: str, counts: list[int], seed: int):
    rng = np.random.default_rng(seed)
    names = [f"data_batch_{i}.bin" for i in range(1, 6)] if kind == "train" else ["test_batch.bin"]
    xs, ys = [], []
    for name, n in zip(names, counts):
        x = rng.integers(0, 256, size=(n, 3, 32, 32), dtype=np.uint8)
        y = rng.integers(0, 10, size=n).astype(np.uint8)
        write(folder / name, cifar_bytes(x, y))
        xs.append(x)
        ys.append(y)
    return np.concatenate(xs), np.concatenate(ys)


def test_cifar_round_trip(tmp_path):
    xtr, ytr = make_cifar(tmp_path, "train", [3, 1, 2, 4, 2], seed=5)
    xte, yte = make_cifar(tmp_path, "test", [3], seed=6)
    for kind, x, y in (("train", xtr, ytr), ("test", xte, yte)):
        d = load_cifar10_binary(tmp_path, kind)
        assert len(d) == len(y)
        assert d.x.shape == (len(y), 3, 32, 32) and d.x.dtype == np.float32
        assert d.y.dtype == np.int64
        np.testing.assert_array_equal(d.x, x.astype(np.float32) / np.float32(255))
        np.testing.assert_array_equal(d.y, y.astype(np.int64))
        assert 0.0 <= d.x.min() and d.x.max() <= 1.0


def test_cifar_chw_layout(tmp_path):
    # one record: label 7, red plane 255, green plane 0, blue plane 51, row 0 of red = 0
    red = bytearray([255]) * 1024
    red[:32] = bytes(32)
    record = bytes([7]) + bytes(red) + bytes(1024) + bytes([51]) * 1024
    write(tmp_path / "test_batch.bin", record)
    d = load_cifar10_binary(tmp_path, "test", dtype=np.float64)
    assert d.y.tolist() == [7]
    assert d.x.dtype == np.float64
    assert np.all(d.x[0, 0, 1:] == 1.0) and np.all(d.x[0, 0, 0] == 0.0)
    assert np.all(d.x[0, 1] == 0.0)
    assert np.all(np.abs(d.x[0, 2] - 0.2) <= 2 * np.finfo(np.float64).eps * 0.2)  # 51 / 255: two roundings at most


@pytest.mark.parametrize(
    "mutate, pattern",
    [
        (lambda b: b[:-1], r"whole number of 3073-byte records.*found 9218 bytes"),
        (lambda b: b + b"\0" * 10, r"whole number of 3073-byte records.*found 9229 bytes"),
        (lambda b: b"", r"found 0 bytes"),
        (lambda b: b[:3073] + bytes([10]) + b[3074:], r"labels in 0\.\.9.*found label 10 at index 1"),
        (lambda b: bytes([255]) + b[1:], r"labels in 0\.\.9.*found label 255 at index 0"),
    ],
)
def test_cifar_malformed(tmp_path, mutate, pattern):
    make_cifar(tmp_path, "train", [3, 3, 3, 3, 3], seed=0)
    path = tmp_path / "data_batch_4.bin"
    path.write_bytes(mutate(path.read_bytes()))
    with pytest.raises(DataFormatError, match=pattern) as ei:
        load_cifar10_binary(tmp_path, "train")
    assert_names(ei, path)


def test_cifar_missing_file_and_bad_kind(tmp_path):
    make_cifar(tmp_path, "train", [1, 1, 1, 1, 1], seed=0)
    (tmp_path / "data_batch_3.bin").unlink()
    with pytest.raises(FileNotFoundError) as ei:
        load_cifar10_binary(tmp_path, "train")
    assert_names(ei, tmp_path / "data_batch_3.bin")
    with pytest.raises(FileNotFoundError) as ei:
        load_cifar10_binary(tmp_path, "test")
    assert_names(ei, tmp_path / "test_batch.bin")
    with pytest.raises(ValueError, match="kind"):
        load_cifar10_binary(tmp_path, "validation")


def test_loaders_check_kind_and_dtype_before_reading_anything(tmp_path):
    from funcnn.data import load_cifar10_binary, load_digits, load_mnist

    missing = tmp_path / "nothing here"
    with pytest.raises(ValueError, match="load_digits: dtype must be a floating type, got int32"):
        load_digits(np.int32)
    with pytest.raises(ValueError, match="load_mnist: kind must be one of 'train', 'test', got 'val'"):
        load_mnist(missing, kind="val")
    with pytest.raises(ValueError, match="load_mnist: dtype must be a floating type, got uint8"):
        load_mnist(missing, dtype=np.uint8)
    with pytest.raises(ValueError, match="load_cifar10_binary: kind must be one of 'train', 'test', got 'TRAIN'"):
        load_cifar10_binary(missing, kind="TRAIN")
    with pytest.raises(TypeError, match="load_cifar10_binary: dtype must be a floating dtype, got 'no such type'"):
        load_cifar10_binary(missing, dtype="no such type")
    assert load_digits(np.float16).train.x.dtype == np.float16
