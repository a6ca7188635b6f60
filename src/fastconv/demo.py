"""Train the Keras MNIST CNN in NumPy on fastconv's kernels and look at its filters.

``python -m fastconv.demo`` trains conv32(3x3)-conv64(3x3)-maxpool2-dropout0.25-dense128-
dropout0.5-dense10 (padding "valid", ReLU, Adam) on scikit-learn's bundled 8x8 digits,
upsampled 2x to 16x16 and, for training, also shifted by one pixel in the four directions
(5x the images; ``--no-augment`` trains on the 1438 originals alone), or on real MNIST with
``--mnist DIR``. It prints loss, accuracy and images/s per epoch, and writes PNG grids of
the first layer's 32 filters before and after training and of the second layer's filters
(one row per filter, one column per input channel), and, with matplotlib, ``filters.png``:
one figure of the filters before/after on a diverging scale, their responses to a test
digit and the second layer (:mod:`fastconv.demo_figure`). ``--keras`` trains the same
network in Keras too and draws ``filters_keras.png`` from it, read with ``load_keras``.
"""

from __future__ import annotations

import argparse
import contextlib
import importlib
import os
import sys
import time
from typing import Callable, Dict, Optional, Sequence, Tuple

import numpy as np

from . import datasets, nn

__all__ = ["build_model", "load_data", "filter_grid", "png_writer", "run", "main"]

PNG_HINT = ("fastconv.demo: no Pillow or matplotlib, so no filter pictures this time; "
            "for them: pip install \"fastconv[demo]\" (or pip install matplotlib)")


def build_model(num_classes: int = 10, kernels: str = "fastconv", seed: Optional[int] = 0,
                dtype: str = "float32") -> nn.Sequential:
    """The Keras MNIST example CNN, compiled with Adam(1e-3).

    Parameters
    ----------
    num_classes : int
    kernels : {"fastconv", "reference"}
        Which conv kernels the two Conv2D layers call.
    seed : int or None
        Seeds every initializer and dropout mask.
    dtype : str

    Returns
    -------
    nn.Sequential
    """
    seeds = np.random.SeedSequence(seed).spawn(6)
    rng = [np.random.default_rng(s) for s in seeds]
    model = nn.Sequential([
        nn.Conv2D(32, 3, padding="valid", kernels=kernels, dtype=dtype, seed=rng[0], name="conv1"),
        nn.ReLU(),
        nn.Conv2D(64, 3, padding="valid", kernels=kernels, dtype=dtype, seed=rng[1], name="conv2"),
        nn.ReLU(),
        nn.MaxPool2D(2),
        nn.Dropout(0.25, seed=rng[2]),
        nn.Flatten(),
        nn.Dense(128, dtype=dtype, seed=rng[3]),
        nn.ReLU(),
        nn.Dropout(0.5, seed=rng[4]),
        nn.Dense(num_classes, dtype=dtype, seed=rng[5]),
    ])
    return model.compile(nn.Adam(1e-3))


def load_data(mnist: Optional[str] = None, upsample: int = 2, seed: Optional[int] = 0,
              limit: Optional[int] = None) -> Tuple[Tuple[np.ndarray, np.ndarray], Tuple[np.ndarray, np.ndarray]]:
    """Training and test images as float32 NCHW in [0, 1], labels as int64.

    Parameters
    ----------
    mnist : str, optional
        Directory of the four MNIST IDX files; else scikit-learn's digits.
    upsample : int
        Digits only: repeat every pixel ``upsample`` x ``upsample`` times (8x8 -> 16x16 for 2).
    seed : int or None
        Seeds the digits train/test split.
    limit : int, optional
        Keep only the first ``limit`` training and ``limit // 4`` test images (quick runs).

    Returns
    -------
    (x_train, y_train), (x_test, y_test)
    """
    if mnist:
        (xtr, ytr), (xte, yte) = datasets.load_mnist(mnist)
        scale = 255.0
    else:
        (xtr, ytr), (xte, yte) = datasets.load_digits(test_fraction=0.2, seed=seed)
        scale = 16.0
        if upsample > 1:
            xtr = xtr.repeat(upsample, axis=1).repeat(upsample, axis=2)
            xte = xte.repeat(upsample, axis=1).repeat(upsample, axis=2)
    if limit:
        xtr, ytr, xte, yte = xtr[:limit], ytr[:limit], xte[:max(limit // 4, 1)], yte[:max(limit // 4, 1)]

    def prep(x):
        return (np.asarray(x, dtype=np.float32) / np.float32(scale))[:, None]

    return (prep(xtr), ytr.astype(np.int64)), (prep(xte), yte.astype(np.int64))


def filter_grid(kernels: np.ndarray, columns: Optional[int] = None, cell: int = 10, gap: int = 4) -> np.ndarray:
    """Tile filters into one grayscale image (zero is mid-grey, each filter scaled by its max |w|).

    Parameters
    ----------
    kernels : ndarray, shape (F, C, kh, kw)
        With ``C == 1``: ``F`` tiles, ``columns`` per row. With ``C > 1``: one row per
        filter, one column per input channel.
    columns : int, optional
        Tiles per row when ``C == 1`` (default: about ``sqrt(2 F)``).
    cell : int
        Pixels per kernel tap.
    gap : int
        Pixels between tiles.

    Returns
    -------
    uint8 ndarray, 2-D
    """
    k = np.asarray(kernels, dtype=np.float64)
    f, c, kh, kw = k.shape
    scale = np.abs(k).reshape(f, -1).max(axis=1).reshape(f, 1, 1, 1)
    k = 0.5 + 0.5 * k / np.where(scale > 0, scale, 1.0)  # [-max, max] -> [0, 1]
    if c == 1:
        cols = columns or int(np.ceil(np.sqrt(2 * f)))
        rows = -(-f // cols)
        tiles = np.full((rows * cols, kh, kw), 1.0)  # empty slots white
        tiles[:f] = k[:, 0]
        tiles = tiles.reshape(rows, cols, kh, kw)
    else:
        rows, cols, tiles = f, c, k
    tiles = np.kron(tiles, np.ones((cell, cell)))  # (rows, cols, kh*cell, kw*cell)
    th, tw = kh * cell, kw * cell
    img = np.ones((rows * (th + gap) + gap, cols * (tw + gap) + gap))
    view = img[gap:, gap:].reshape(rows, th + gap, cols, tw + gap)[:, :th, :, :tw]
    view[...] = tiles.transpose(0, 2, 1, 3)
    return np.round(img * 255).astype(np.uint8)


def png_writer() -> Optional[Callable[[np.ndarray, str], None]]:
    """A PNG writer from Pillow or, failing that, matplotlib (both imported lazily).

    Returns
    -------
    callable ``write(uint8_image, path)`` or None
        None when neither library can be imported.
    """
    try:
        image = importlib.import_module("PIL.Image")
        return lambda img, path: image.fromarray(img).save(path)
    except ImportError:
        pass
    try:
        mpl_image = importlib.import_module("matplotlib.image")
        return lambda img, path: mpl_image.imsave(path, img, cmap="gray", vmin=0, vmax=255)
    except ImportError:
        return None


@contextlib.contextmanager
def _threads(n: Optional[int], kernels: str):
    """Thread limits for training.

    With fastconv's kernels, NumPy's BLAS (used only by the small Dense matmuls) runs on
    one thread, so that its worker threads and OpenMP's do not compete for the same
    cores. With the reference kernels BLAS does the convolutions
    and gets ``n`` threads (default: all). Needs threadpoolctl (a scikit-learn dependency)
    to change BLAS's threads; fastconv's own count is set with :func:`fastconv.threads`.
    """
    with contextlib.ExitStack() as stack:
        blas = 1 if kernels == "fastconv" else n
        if blas is not None:
            try:
                from threadpoolctl import threadpool_limits
                stack.enter_context(threadpool_limits(blas, user_api="blas"))
            except ImportError:
                if n is not None:
                    print("fastconv.demo: threadpoolctl not installed, "
                          "so NumPy's BLAS threads are not limited")
        if kernels == "fastconv" and n is not None:
            stack.enter_context(importlib.import_module("fastconv").threads(n))
        yield


def _save_filters(write, out: str, stage: str, model: nn.Sequential) -> Sequence[str]:
    paths = []
    for layer, cell, gap in ((model.layers[0], 16, 4), (model.layers[2], 5, 2)):
        path = os.path.join(out, f"{layer.name}_{stage}.png")
        write(filter_grid(layer.params["kernel"], cell=cell, gap=gap), path)
        paths.append(path)
    return paths


def _save_figure(model: nn.Sequential, before: np.ndarray, xte: np.ndarray, yte: np.ndarray, out: str,
                 test_accuracy, say) -> Sequence[str]:
    """``filters.png`` (see :mod:`fastconv.demo_figure`), or nothing without matplotlib."""
    from . import demo_figure

    try:
        acc = model.evaluate(xte, yte)["accuracy"] if test_accuracy is None else test_accuracy
        return [demo_figure.filters_figure(
            model, xte[0], os.path.join(out, "filters.png"), before=before, label=int(yte[0]),
            title=f"Trained with fastconv.nn on fastconv's kernels (test accuracy {acc:.1%})")]
    except ImportError as exc:
        say(f"fastconv.demo: {exc}")
        return []


def shift_augment(x: np.ndarray, y: np.ndarray) -> Tuple[np.ndarray, np.ndarray]:
    """The images plus copies shifted by one pixel up, down, left and right (5x the data).

    Parameters
    ----------
    x : ndarray, shape (N, C, H, W)
    y : ndarray, shape (N,)

    Returns
    -------
    x_aug, y_aug : ndarray
        ``(5N, C, H, W)`` and ``(5N,)``; the pixel shifted out is dropped, zeros enter.
    """
    out = [x]
    for axis, step in ((2, 1), (2, -1), (3, 1), (3, -1)):
        shifted = np.roll(x, step, axis=axis)
        edge = [slice(None)] * 4
        edge[axis] = 0 if step > 0 else -1  # the row/column that wrapped around
        shifted[tuple(edge)] = 0
        out.append(shifted)
    return np.concatenate(out), np.tile(y, len(out))


def run(epochs: int = 6, batch_size: int = 32, kernels: str = "fastconv", out: Optional[str] = "demo_out",
        seed: Optional[int] = 0, threads: Optional[int] = None, mnist: Optional[str] = None,
        upsample: int = 2, augment: bool = True, limit: Optional[int] = None,
        verbose: int = 1) -> Dict[str, object]:
    """Train the demo CNN, report test accuracy and time per epoch, draw its filters.

    Parameters
    ----------
    epochs, batch_size : int
    kernels : {"fastconv", "reference"}
    out : str or None
        Directory (created) for the PNG pictures and the trained ``weights.npz``;
        None writes nothing.
    seed : int or None
        Seeds the split, the weights, dropout and shuffling.
    threads : int, optional
        Threads for the convolutions: fastconv's kernels, or NumPy's BLAS with the
        reference kernels. With fastconv, BLAS (the Dense layers) always gets one.
    mnist : str, optional
        Directory of the MNIST IDX files instead of scikit-learn's digits.
    upsample : int
        Digits only: 2 trains on 16x16 images.
    augment : bool
        Digits only: train on the images and their four one-pixel shifts (:func:`shift_augment`).
    limit : int, optional
        Use only this many training images (quick runs and tests).
    verbose : int
        As in :meth:`Sequential.fit`.

    Returns
    -------
    dict
        ``test_accuracy``, ``test_loss``, ``history`` (from fit), ``seconds_per_epoch``
        (mean over epochs after the first, which includes warm-up, when there are several),
        ``pictures`` (paths written) and ``n_train``, ``n_test``.
    """
    say = print if verbose else (lambda *a, **k: None)
    (xtr, ytr), (xte, yte) = load_data(mnist, upsample, seed, limit)
    if augment and not mnist:
        xtr, ytr = shift_augment(xtr, ytr)
    write = png_writer() if out else None
    if out and write is None:
        say(PNG_HINT)
    model = build_model(int(max(ytr.max(), yte.max())) + 1, kernels=kernels, seed=seed)
    shifts = " (with shifts)" if augment and not mnist else ""
    say(f"fastconv.demo: {'MNIST' if mnist else 'scikit-learn digits'} {xtr.shape[2]}x{xtr.shape[3]}, "
        f"{len(xtr)} train{shifts} / {len(xte)} test images, kernels={kernels}, "
        f"threads={threads or 'default'}")
    model.forward(xtr[:1])  # build the weights so they can be drawn before training
    before = model.layers[0].params["kernel"].copy()
    pictures = []
    if write:
        os.makedirs(out, exist_ok=True)
        pictures += _save_filters(write, out, "before", model)
    with _threads(threads, kernels):
        history = model.fit(xtr, ytr, epochs=epochs, batch_size=batch_size, validation_data=(xte, yte),
                            seed=seed, verbose=verbose)
        t0 = time.perf_counter()
        test = model.evaluate(xte, yte)
        eval_s = time.perf_counter() - t0
    if write:
        pictures += _save_filters(write, out, "after", model)
    if out:
        pictures += _save_figure(model, before, xte, yte, out, test_accuracy=test["accuracy"], say=say)
    if out:
        os.makedirs(out, exist_ok=True)
        model.save(os.path.join(out, "weights.npz"))  # reload with build_model(...).load(path)
        say(f"wrote {os.path.join(out, 'weights.npz')}")
    times = history["time"]
    per_epoch = float(np.mean(times[1:] if len(times) > 1 else times)) if times else float("nan")
    which = "mean of epochs 2.." + str(len(times)) if len(times) > 1 else "one epoch"
    say(f"test accuracy {test['accuracy']:.4f} (loss {test['loss']:.4f}); {per_epoch:.2f} s per epoch "
        f"({len(xtr) / per_epoch:.0f} images/s, {which}); test pass {eval_s:.2f} s")
    for path in pictures:
        say(f"wrote {path}")
    return {"test_accuracy": test["accuracy"], "test_loss": test["loss"], "history": history,
            "seconds_per_epoch": per_epoch, "pictures": pictures, "n_train": len(xtr), "n_test": len(xte)}


def main(argv: Optional[Sequence[str]] = None) -> int:
    """Command line entry point (``python -m fastconv.demo``).

    Parameters
    ----------
    argv : sequence of str, optional

    Returns
    -------
    int : exit status
    """
    p = argparse.ArgumentParser(prog="python -m fastconv.demo", description=__doc__.split("\n\n")[0])
    p.add_argument("--epochs", type=int, default=6)
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--kernels", choices=["fastconv", "reference"], default="fastconv",
                   help="fastconv's C kernels or the pure-NumPy reference ones")
    p.add_argument("--out", default="demo_out", help="directory for the filter PNGs (default: demo_out)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=None,
                   help="threads for the conv kernels (fastconv's, or BLAS's for --kernels reference); "
                        "default: all cores")
    p.add_argument("--mnist", metavar="DIR", default=None,
                   help="train on MNIST from the four IDX files in DIR (gzipped or not)")
    p.add_argument("--upsample", type=int, default=2, help="digits: pixel repeat factor (2: 16x16)")
    p.add_argument("--no-augment", dest="augment", action="store_false",
                   help="digits: train on the original images only (no one-pixel shifts)")
    p.add_argument("--limit", type=int, default=None, help="use only this many training images")
    p.add_argument("--keras", action="store_true",
                   help="also train the same network in Keras, save OUT/keras_cnn.keras, read it back with "
                        "fastconv.nn.load_keras and draw OUT/filters_keras.png (needs keras and torch)")
    p.add_argument("--from-keras", metavar="FILE", default=None,
                   help="only read a Keras .keras CNN for 16x16 digits with load_keras, test it and draw "
                        "OUT/filters_keras.png")
    args = p.parse_args(argv)
    try:
        if args.from_keras:
            from . import demo_keras
            demo_keras.from_keras_file(args.from_keras, args.out, seed=args.seed, limit=args.limit)
            return 0
        run(epochs=args.epochs, batch_size=args.batch_size, kernels=args.kernels, out=args.out,
            seed=args.seed, threads=args.threads, mnist=args.mnist, upsample=args.upsample,
            augment=args.augment, limit=args.limit)
        if args.keras:
            from . import demo_keras
            path = os.path.join(args.out, "keras_cnn.keras")
            os.makedirs(args.out, exist_ok=True)
            trained = demo_keras.train_keras(path, epochs=args.epochs, batch_size=args.batch_size, seed=args.seed,
                                             limit=args.limit, augment=args.augment, verbose=2)
            print(f"Keras: test accuracy {trained['keras_test_accuracy']:.4f}; wrote {path}")
            demo_keras.from_keras_file(path, args.out, seed=args.seed, limit=args.limit,
                                       before=trained["before"], keras_model=trained["keras_model"])
    except (ImportError, FileNotFoundError, RuntimeError) as exc:
        print(f"fastconv.demo: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
