"""fastconv.datasets: the IDX parser on small files the test writes, gzipped and not."""

import gzip
import struct

import numpy as np
import pytest

from fastconv import datasets

CODES = {np.uint8: 0x08, np.int8: 0x09, np.int16: 0x0B, np.int32: 0x0C, np.float32: 0x0D, np.float64: 0x0E}


def write_idx(path, array, gz=False):
    """Write ``array`` as an IDX file: magic (0, 0, type, ndim), big-endian dims, big-endian data."""
    array = np.asarray(array)
    header = bytes([0, 0, CODES[array.dtype.type], array.ndim]) + struct.pack(f">{array.ndim}I", *array.shape)
    payload = header + array.astype(array.dtype.newbyteorder(">")).tobytes()
    with (gzip.open if gz else open)(path, "wb") as f:
        f.write(payload)
    return path


@pytest.mark.parametrize("gz", [False, True])
@pytest.mark.parametrize("dtype", list(CODES))
def test_idx_roundtrip(tmp_path, dtype, gz):
    rng = np.random.default_rng(0)
    a = (rng.standard_normal((3, 4, 5)) * 50).astype(dtype)
    got = datasets.load_idx(write_idx(tmp_path / "a.idx", a, gz))
    assert got.dtype == np.dtype(dtype) and got.dtype.isnative
    np.testing.assert_array_equal(got, a)
    got.flat[0] = 1  # a writable array, not a view of the file bytes


def test_idx_1d_and_big_endian_dims(tmp_path):
    labels = np.arange(300, dtype=np.uint8) % 10  # 300 > 255: dims really are 32-bit big-endian
    got = datasets.load_idx(write_idx(tmp_path / "l", labels))
    assert got.shape == (300,)
    np.testing.assert_array_equal(got, labels)


def test_idx_errors(tmp_path):
    bad = tmp_path / "bad"
    bad.write_bytes(b"\x01\x00\x08\x01" + struct.pack(">I", 2) + b"\x00\x00")
    with pytest.raises(ValueError, match="magic"):
        datasets.load_idx(bad)
    bad.write_bytes(b"\x00\x00\x07\x01" + struct.pack(">I", 2) + b"\x00\x00")
    with pytest.raises(ValueError, match="type"):
        datasets.load_idx(bad)
    bad.write_bytes(b"\x00\x00\x08\x01" + struct.pack(">I", 3) + b"\x00\x00")
    with pytest.raises(ValueError, match="data bytes"):
        datasets.load_idx(bad)
    bad.write_bytes(b"\x00\x00\x08\x02" + struct.pack(">I", 3))
    with pytest.raises(ValueError, match="truncated"):
        datasets.load_idx(bad)


@pytest.mark.parametrize("gz, dotted", [(False, False), (True, False), (False, True)])
def test_load_mnist(tmp_path, gz, dotted):
    rng = np.random.default_rng(1)
    content = {
        "train-images-idx3-ubyte": rng.integers(0, 256, (6, 28, 28), dtype=np.uint8),
        "train-labels-idx1-ubyte": rng.integers(0, 10, 6, dtype=np.uint8),
        "t10k-images-idx3-ubyte": rng.integers(0, 256, (2, 28, 28), dtype=np.uint8),
        "t10k-labels-idx1-ubyte": rng.integers(0, 10, 2, dtype=np.uint8),
    }
    for name, a in content.items():
        name = name.replace("-idx", ".idx") if dotted else name
        write_idx(tmp_path / (name + (".gz" if gz else "")), a, gz)
    (xtr, ytr), (xte, yte) = datasets.load_mnist(tmp_path)
    np.testing.assert_array_equal(xtr, content["train-images-idx3-ubyte"])
    np.testing.assert_array_equal(ytr, content["train-labels-idx1-ubyte"])
    np.testing.assert_array_equal(xte, content["t10k-images-idx3-ubyte"])
    np.testing.assert_array_equal(yte, content["t10k-labels-idx1-ubyte"])


def test_load_mnist_missing_or_mismatched(tmp_path):
    with pytest.raises(FileNotFoundError, match="train-images-idx3-ubyte"):
        datasets.load_mnist(tmp_path)
    write_idx(tmp_path / "train-images-idx3-ubyte", np.zeros((3, 2, 2), np.uint8))
    write_idx(tmp_path / "train-labels-idx1-ubyte", np.zeros(2, np.uint8))
    write_idx(tmp_path / "t10k-images-idx3-ubyte", np.zeros((1, 2, 2), np.uint8))
    write_idx(tmp_path / "t10k-labels-idx1-ubyte", np.zeros(1, np.uint8))
    with pytest.raises(ValueError, match="3 images but 2 labels"):
        datasets.load_mnist(tmp_path)


def test_load_digits_stratified_split():
    pytest.importorskip("sklearn", reason="scikit-learn not installed (pip install scikit-learn)")
    (xtr, ytr), (xte, yte) = datasets.load_digits(test_fraction=0.2, seed=0)
    assert xtr.shape[1:] == (8, 8) and len(xtr) + len(xte) == 1797
    assert abs(len(xte) - 0.2 * 1797) < 10
    counts = np.bincount(yte, minlength=10) / np.bincount(np.concatenate([ytr, yte]), minlength=10)
    assert np.all(np.abs(counts - 0.2) < 0.02)
    (xtr2, _), _ = datasets.load_digits(seed=0)
    np.testing.assert_array_equal(xtr, xtr2)
    (xtr3, _), _ = datasets.load_digits(seed=1)
    assert not np.array_equal(xtr, xtr3)


def test_load_digits_without_sklearn(monkeypatch):
    import sys
    monkeypatch.setitem(sys.modules, "sklearn", None)
    monkeypatch.setitem(sys.modules, "sklearn.datasets", None)
    with pytest.raises(ImportError, match="pip install scikit-learn"):
        datasets.load_digits()
