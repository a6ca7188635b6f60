"""Small dataset loaders for the demo: IDX files (MNIST) parsed with NumPy, and
scikit-learn's bundled 8x8 digits."""

from __future__ import annotations

import gzip
import os
from typing import Optional, Tuple, Union

import numpy as np

__all__ = ["load_idx", "load_mnist", "load_digits", "MNIST_FILES", "SKLEARN_HINT"]

PathLike = Union[str, os.PathLike]

# IDX type byte -> big-endian NumPy dtype (http://yann.lecun.com/exdb/mnist/)
_IDX_DTYPES = {0x08: ">u1", 0x09: ">i1", 0x0B: ">i2", 0x0C: ">i4", 0x0D: ">f4", 0x0E: ">f8"}

MNIST_FILES = {
    "train_images": "train-images-idx3-ubyte",
    "train_labels": "train-labels-idx1-ubyte",
    "test_images": "t10k-images-idx3-ubyte",
    "test_labels": "t10k-labels-idx1-ubyte",
}

SKLEARN_HINT = ("the digits demo needs scikit-learn for its bundled 8x8 digits: "
                "`pip install scikit-learn` (or `pip install \"fastconv[demo]\"`), "
                "or pass --mnist DIR with the four MNIST IDX files")


def _read_bytes(path: PathLike) -> bytes:
    """File contents, gunzipped if the file starts with the gzip magic bytes."""
    with open(path, "rb") as f:
        raw = f.read()
    return gzip.decompress(raw) if raw[:2] == b"\x1f\x8b" else raw


def load_idx(path: PathLike) -> np.ndarray:
    """Parse one IDX file (gzipped or not) into a native-endian array.

    Parameters
    ----------
    path : str or path-like

    Returns
    -------
    ndarray
        Shape from the header, dtype from its type byte (uint8 for MNIST).

    Raises
    ------
    ValueError
        For a bad magic number, an unknown type byte or a size that does not
        match the header.
    """
    raw = _read_bytes(path)
    if len(raw) < 4 or raw[0] != 0 or raw[1] != 0:
        raise ValueError(f"{path}: not an IDX file (bad magic number)")
    code, ndim = raw[2], raw[3]
    if code not in _IDX_DTYPES:
        raise ValueError(f"{path}: unknown IDX data type 0x{code:02x}")
    header = 4 + 4 * ndim
    if len(raw) < header:
        raise ValueError(f"{path}: truncated IDX header")
    shape = tuple(int(s) for s in np.frombuffer(raw, dtype=">u4", count=ndim, offset=4))
    dtype = np.dtype(_IDX_DTYPES[code])
    expected = int(np.prod(shape, dtype=np.int64)) * dtype.itemsize
    if len(raw) - header != expected:
        raise ValueError(f"{path}: header says {shape} ({expected} bytes) but the file has "
                         f"{len(raw) - header} data bytes")
    data = np.frombuffer(raw, dtype=dtype, offset=header).reshape(shape)
    return data.astype(dtype.newbyteorder("="))  # native order, writable copy


def _find(directory: PathLike, stem: str) -> str:
    """The file for ``stem`` in ``directory``: ``stem``, ``stem.gz`` or the ``.idx3-`` spelling."""
    alt = stem.replace("-idx", ".idx")
    for name in (stem, stem + ".gz", alt, alt + ".gz"):
        path = os.path.join(directory, name)
        if os.path.isfile(path):
            return path
    raise FileNotFoundError(f"{stem}[.gz] not found in {directory!r}; MNIST needs the four files "
                            f"{', '.join(MNIST_FILES.values())} (gzipped or not)")


def load_mnist(directory: PathLike) -> Tuple[Tuple[np.ndarray, np.ndarray], Tuple[np.ndarray, np.ndarray]]:
    """Read the four standard MNIST IDX files from ``directory``.

    Parameters
    ----------
    directory : str or path-like

    Returns
    -------
    (x_train, y_train), (x_test, y_test)
        Images as uint8 ``(N, 28, 28)``, labels as uint8 ``(N,)``.
    """
    arrays = {key: load_idx(_find(directory, stem)) for key, stem in MNIST_FILES.items()}
    for split in ("train", "test"):
        if len(arrays[f"{split}_images"]) != len(arrays[f"{split}_labels"]):
            raise ValueError(f"MNIST {split}: {len(arrays[f'{split}_images'])} images but "
                             f"{len(arrays[f'{split}_labels'])} labels")
    return ((arrays["train_images"], arrays["train_labels"]),
            (arrays["test_images"], arrays["test_labels"]))


def load_digits(test_fraction: float = 0.2, seed: Optional[int] = 0
                ) -> Tuple[Tuple[np.ndarray, np.ndarray], Tuple[np.ndarray, np.ndarray]]:
    """scikit-learn's 1797 8x8 digits, split into train and test stratified by class.

    Parameters
    ----------
    test_fraction : float
        Share of every class held out for testing.
    seed : int or None
        Seeds the split.

    Returns
    -------
    (x_train, y_train), (x_test, y_test)
        Images as float64 ``(N, 8, 8)`` with values 0..16, labels as int64.

    Raises
    ------
    ImportError
        Without scikit-learn, with the command that installs it.
    """
    try:
        from sklearn.datasets import load_digits as _sk_load_digits
    except ImportError as exc:
        raise ImportError(SKLEARN_HINT) from exc
    bunch = _sk_load_digits()
    images, labels = bunch.images, bunch.target.astype(np.int64)
    rng = np.random.default_rng(seed)
    test = np.zeros(len(labels), dtype=bool)
    for k in np.unique(labels):  # stratified: the same share of every class
        members = rng.permutation(np.flatnonzero(labels == k))
        test[members[:int(round(test_fraction * len(members)))]] = True
    return (images[~test], labels[~test]), (images[test], labels[test])
