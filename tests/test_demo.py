"""fastconv.demo: a one-epoch run on a small subset, with and without the picture libraries."""

import gzip
import struct
import sys

import numpy as np
import pytest

from fastconv import demo
from fastconv.nn.conv import resolve_kernels


def _c_kernels_available():
    try:
        resolve_kernels("fastconv")
        return True
    except Exception:
        return False


KERNELS = ["reference", pytest.param("fastconv", marks=pytest.mark.skipif(
    not _c_kernels_available(), reason="fastconv C extension not built"))]
PNG = b"\x89PNG\r\n\x1a\n"


def write_idx(path, array, gz=False):
    """A uint8 IDX file: magic (0, 0, 0x08, ndim), big-endian dims, the bytes."""
    payload = bytes([0, 0, 8, array.ndim]) + struct.pack(f">{array.ndim}I", *array.shape) + array.tobytes()
    with (gzip.open if gz else open)(path, "wb") as f:
        f.write(payload)


def _has_matplotlib():
    try:
        import matplotlib.figure  # noqa: F401
        return True
    except ImportError:
        return False


def _no_pictures(monkeypatch):
    for mod in ("PIL", "PIL.Image", "matplotlib", "matplotlib.image"):
        monkeypatch.setitem(sys.modules, mod, None)  # makes `import mod` raise ImportError


@pytest.mark.parametrize("kernels", KERNELS)
def test_demo_one_epoch(tmp_path, kernels, capsys):
    pytest.importorskip("sklearn", reason="the digits demo needs scikit-learn (pip install scikit-learn)")
    if demo.png_writer() is None:
        pytest.skip("neither Pillow nor matplotlib installed")
    result = demo.run(epochs=1, batch_size=32, kernels=kernels, out=str(tmp_path), seed=0,
                      limit=48, threads=1, verbose=2)
    assert result["n_train"] == 5 * 48 and result["n_test"] == 12  # augmented with 4 shifts
    assert len(result["history"]["loss"]) == 1 and 0.0 <= result["test_accuracy"] <= 1.0
    assert result["seconds_per_epoch"] > 0
    names = sorted(p.name for p in tmp_path.iterdir())
    figure = ["filters.png"] if _has_matplotlib() else []
    assert names == sorted(["conv1_after.png", "conv1_before.png", "conv2_after.png", "conv2_before.png",
                            "weights.npz", *figure])
    for name in names:
        if name.endswith(".png"):
            assert (tmp_path / name).read_bytes()[:8] == PNG
    # training changed the first layer's filters, so the two pictures differ
    assert (tmp_path / "conv1_before.png").read_bytes() != (tmp_path / "conv1_after.png").read_bytes()
    out = capsys.readouterr().out
    assert "epoch 1/1" in out and "images/s" in out and "test accuracy" in out
    # the saved weights reload into a fresh model, as docs/demo.md chains it
    model = demo.build_model(kernels=kernels, seed=123).load(tmp_path / "weights.npz")
    (_, _), (xte, yte) = demo.load_data(seed=0, limit=48)
    assert model.evaluate(xte, yte)["accuracy"] == pytest.approx(result["test_accuracy"])


def test_demo_trains_without_picture_libraries(tmp_path, monkeypatch, capsys):
    pytest.importorskip("sklearn", reason="the digits demo needs scikit-learn (pip install scikit-learn)")
    _no_pictures(monkeypatch)
    assert demo.png_writer() is None
    result = demo.run(epochs=1, kernels="reference", out=str(tmp_path / "pics"), limit=64, augment=False,
                      verbose=2)
    out = capsys.readouterr().out
    assert 'pip install "fastconv[demo]"' in out and "matplotlib" in out
    assert result["pictures"] == [] and [p.name for p in (tmp_path / "pics").iterdir()] == ["weights.npz"]
    assert len(result["history"]["loss"]) == 1


def test_demo_main_without_sklearn_says_how_to_install(monkeypatch, capsys):
    monkeypatch.setitem(sys.modules, "sklearn", None)
    monkeypatch.setitem(sys.modules, "sklearn.datasets", None)
    assert demo.main(["--epochs", "1", "--kernels", "reference"]) == 2
    err = capsys.readouterr().err
    assert "pip install scikit-learn" in err and "--mnist" in err


def test_demo_main_on_mnist_idx_files(tmp_path, monkeypatch, capsys):
    """--mnist DIR: the demo trains on IDX files (28x28) without scikit-learn."""
    monkeypatch.setitem(sys.modules, "sklearn", None)
    _no_pictures(monkeypatch)
    rng = np.random.default_rng(0)
    write_idx(tmp_path / "train-images-idx3-ubyte.gz", rng.integers(0, 256, (40, 28, 28), dtype=np.uint8), gz=True)
    write_idx(tmp_path / "train-labels-idx1-ubyte.gz", np.arange(40, dtype=np.uint8) % 10, gz=True)
    write_idx(tmp_path / "t10k-images-idx3-ubyte.gz", rng.integers(0, 256, (10, 28, 28), dtype=np.uint8), gz=True)
    write_idx(tmp_path / "t10k-labels-idx1-ubyte.gz", np.arange(10, dtype=np.uint8), gz=True)
    code = demo.main(["--mnist", str(tmp_path), "--epochs", "1", "--kernels", "reference",
                      "--out", str(tmp_path / "pics"), "--batch-size", "20", "--threads", "1"])
    assert code == 0
    out = capsys.readouterr().out
    assert "MNIST 28x28, 40 train / 10 test" in out and "epoch 1/1" in out


def test_filter_grid_layout():
    k = np.zeros((32, 1, 3, 3))
    k[:, 0, 0, 0] = 1.0   # max -> white
    k[:, 0, 2, 2] = -1.0  # min -> black
    img = demo.filter_grid(k, columns=8, cell=2, gap=1)
    assert img.dtype == np.uint8 and img.shape == (4 * 7 + 1, 8 * 7 + 1)
    assert img[1, 1] == 255 and img[5, 5] == 0 and img[3, 3] == 128  # zero weight is mid-grey
    img2 = demo.filter_grid(np.ones((4, 6, 3, 3)), cell=1, gap=1)
    assert img2.shape == (4 * 4 + 1, 6 * 4 + 1)  # one row per filter, one column per input channel


def test_shift_augment():
    x = np.arange(2 * 9, dtype=np.float32).reshape(2, 1, 3, 3) + 1
    xa, ya = demo.shift_augment(x, np.array([4, 7]))
    assert xa.shape == (10, 1, 3, 3) and list(ya) == [4, 7] * 5
    np.testing.assert_array_equal(xa[:2], x)
    np.testing.assert_array_equal(xa[2, 0], [[0, 0, 0], [1, 2, 3], [4, 5, 6]])   # down, zeros enter
    np.testing.assert_array_equal(xa[4, 0], [[4, 5, 6], [7, 8, 9], [0, 0, 0]])   # up
    np.testing.assert_array_equal(xa[6, 0], [[0, 1, 2], [0, 4, 5], [0, 7, 8]])   # right
    np.testing.assert_array_equal(xa[8, 0], [[2, 3, 0], [5, 6, 0], [8, 9, 0]])   # left


@pytest.mark.parametrize("kernels", KERNELS)
def test_demo_thread_limits(kernels):
    threadpoolctl = pytest.importorskip("threadpoolctl", reason="threadpoolctl not installed")

    def blas_threads():
        return [p["num_threads"] for p in threadpoolctl.threadpool_info() if p["user_api"] == "blas"]

    if not blas_threads():
        pytest.skip("no BLAS library visible to threadpoolctl")
    with demo._threads(None, kernels):
        # fastconv: BLAS (only the Dense layers) on one thread; reference: BLAS left alone
        inside = blas_threads()
    assert all(n == 1 for n in inside) if kernels == "fastconv" else inside == blas_threads()
    with demo._threads(1, kernels):
        assert all(n == 1 for n in blas_threads())
        if kernels == "fastconv":
            import fastconv
            assert fastconv.get_num_threads() == 1


def test_filters_figure_panels(tmp_path):
    """The one-glance figure: glorot limit stated, responses of the first layer to the digit."""
    pytest.importorskip("matplotlib", reason="the figure needs matplotlib (pip install matplotlib)")
    from fastconv import demo_figure
    model = demo.build_model(kernels="fastconv" if _c_kernels_available() else "reference", seed=0)
    image = np.zeros((1, 16, 16), np.float32)
    image[0, 3:13, 7:9] = 1.0  # a vertical bar: vertical-edge filters answer on its sides
    model.forward(image[None])
    assert demo_figure.glorot_limit(model.layers[0].kernel.shape) == pytest.approx(np.sqrt(6 / (9 + 288)))
    r1, r2 = demo_figure.responses(model, image)
    assert r1.shape == (32, 14, 14) and r2.shape == (64, 12, 12)
    np.testing.assert_allclose(r1, model.layers[0].forward(image[None])[0], rtol=1e-6, atol=1e-6)
    assert np.isnan(demo_figure.mosaic(np.ones((3, 2, 2)), 2)).sum() == 5 * 5 - 3 * 4
    path = demo_figure.filters_figure(model, image, str(tmp_path / "f.png"), label=1)
    assert (tmp_path / "f.png").read_bytes()[:8] == PNG and path.endswith("f.png")


def test_keras_demo_figure_from_a_keras_file(tmp_path, capsys):
    """--keras's pieces on a tiny run: Keras trains and saves, load_keras reads, predictions agree."""
    pytest.importorskip("sklearn", reason="the digits demo needs scikit-learn (pip install scikit-learn)")
    pytest.importorskip("h5py", reason="Keras files need h5py")
    from fastconv import demo_keras
    try:
        trained = demo_keras.train_keras(str(tmp_path / "k.keras"), epochs=1, limit=16, augment=False)
    except ImportError as exc:
        pytest.skip(str(exc))
    assert trained["before"].shape == (32, 1, 3, 3)
    result = demo_keras.from_keras_file(trained["path"], str(tmp_path), limit=16, before=trained["before"],
                                        keras_model=trained["keras_model"])
    assert result["max_abs_diff"] < 1e-5
    assert result["test_accuracy"] == pytest.approx(trained["keras_test_accuracy"])
    if _has_matplotlib():
        assert (tmp_path / "filters_keras.png").read_bytes()[:8] == PNG
    assert "test accuracy" in capsys.readouterr().out
