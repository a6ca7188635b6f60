"""The demo network trained in Keras itself, then read into fastconv with ``load_keras``.

``python -m fastconv.demo --keras`` trains the same Keras MNIST CNN on the same digits
with Keras (any backend; torch is the one tested), saves ``keras_cnn.keras``, loads it
with :func:`fastconv.nn.load_keras`, checks that fastconv predicts what Keras predicts
and draws the same figure as for the fastconv-trained model. Keras is imported only here.
"""

from __future__ import annotations

import importlib
import os
from typing import Dict, Optional

import numpy as np

from . import nn

__all__ = ["build_keras_model", "train_keras", "from_keras_file"]

KERAS_HINT = ("the Keras demo needs Keras 3 and a backend: pip install keras torch "
              "(and set KERAS_BACKEND=torch), or pip install \"fastconv[keras,torch]\"")


def _keras():
    os.environ.setdefault("KERAS_BACKEND", "torch")
    try:
        return importlib.import_module("keras")
    except Exception as exc:  # ImportError, or a backend that is not installed
        raise ImportError(f"{KERAS_HINT} ({exc})") from None


def build_keras_model(num_classes: int = 10, input_shape=(16, 16, 1), seed: Optional[int] = 0):
    """The Keras MNIST example CNN (``channels_last``), compiled with Adam(1e-3).

    Returns
    -------
    keras.Sequential
    """
    keras = _keras()
    if seed is not None:
        keras.utils.set_random_seed(seed)
    L = keras.layers
    model = keras.Sequential([
        keras.Input(input_shape),
        L.Conv2D(32, 3, activation="relu"), L.Conv2D(64, 3, activation="relu"),
        L.MaxPooling2D(2), L.Dropout(0.25), L.Flatten(),
        L.Dense(128, activation="relu"), L.Dropout(0.5), L.Dense(num_classes, activation="softmax"),
    ])
    model.compile(optimizer=keras.optimizers.Adam(1e-3), loss="sparse_categorical_crossentropy",
                  metrics=["accuracy"])
    return model


def train_keras(path: str, epochs: int = 6, batch_size: int = 32, seed: Optional[int] = 0,
                limit: Optional[int] = None, augment: bool = True, verbose: int = 0) -> Dict[str, object]:
    """Train the Keras CNN on the demo's digits and save it as a ``.keras`` file.

    Parameters
    ----------
    path : str
        Where to write the model (ends in ``.keras``).
    epochs, batch_size, seed, limit, augment, verbose
        As :func:`fastconv.demo.run`.

    Returns
    -------
    dict
        ``path``, ``before`` (the first layer's kernel before training, fastconv's
        ``(F, C, kh, kw)`` layout) and ``keras_test_accuracy``.
    """
    from . import demo

    (xtr, ytr), (xte, yte) = demo.load_data(None, 2, seed, limit)
    if augment:
        xtr, ytr = demo.shift_augment(xtr, ytr)
    to_nhwc = (lambda a: np.ascontiguousarray(a.transpose(0, 2, 3, 1)))
    model = build_keras_model(int(max(ytr.max(), yte.max())) + 1, to_nhwc(xtr[:1]).shape[1:], seed)
    before = np.asarray(model.layers[0].get_weights()[0]).transpose(3, 2, 0, 1).copy()
    model.fit(to_nhwc(xtr), ytr, epochs=epochs, batch_size=batch_size, verbose=verbose, shuffle=True)
    _, acc = model.evaluate(to_nhwc(xte), yte, verbose=0)
    model.save(path)
    return {"path": path, "before": before, "keras_test_accuracy": float(acc), "keras_model": model}


def from_keras_file(path: str, out: str, seed: Optional[int] = 0, limit: Optional[int] = None,
                    before: Optional[np.ndarray] = None, keras_model=None, say=print) -> Dict[str, object]:
    """Load a Keras ``.keras`` CNN with ``load_keras``, test it on the digits, draw its figure.

    Parameters
    ----------
    path : str
        A Keras Sequential CNN for 16x16x1 digits (as :func:`train_keras` writes).
    out : str
        Directory for ``filters_keras.png``.
    before : ndarray, optional
        The first layer's kernel before training (else a glorot_uniform draw is shown).
    keras_model : keras.Model, optional
        When given, its predictions are compared with fastconv's.

    Returns
    -------
    dict
        ``test_accuracy`` (fastconv's), ``max_abs_diff`` (vs Keras, when compared) and
        ``picture`` (the path, or None without matplotlib).
    """
    from . import demo, demo_figure

    model = nn.load_keras(path)
    (_, _), (xte, yte) = demo.load_data(None, 2, seed, limit)
    x = np.ascontiguousarray(xte.transpose(0, 2, 3, 1))
    probs = model.predict(x)
    result: Dict[str, object] = {"test_accuracy": float(np.mean(probs.argmax(axis=1) == yte))}
    say(f"fastconv on the Keras model {path}: test accuracy {result['test_accuracy']:.4f}")
    if keras_model is not None:
        diff = float(np.abs(np.asarray(keras_model.predict(x, verbose=0)) - probs).max())
        result["max_abs_diff"] = diff
        say(f"largest |Keras - fastconv| over the test probabilities: {diff:.2e}")
    try:
        os.makedirs(out, exist_ok=True)
        picture = demo_figure.filters_figure(
            model, xte[0], os.path.join(out, "filters_keras.png"), before=before, label=int(yte[0]),
            title=f"Trained in Keras, read with fastconv.nn.load_keras, run on fastconv's kernels "
                  f"(test accuracy {result['test_accuracy']:.1%})")
        say(f"wrote {picture}")
    except ImportError as exc:
        say(f"fastconv.demo: {exc}")
        picture = None
    result["picture"] = picture
    return result
