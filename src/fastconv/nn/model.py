"""``Sequential``: a stack of layers with a Keras-like fit / evaluate / predict loop."""

from __future__ import annotations

import contextlib
import os
import time
import warnings
from typing import Dict, Iterable, Iterator, List, Optional, Sequence, Tuple, Union

import numpy as np

from . import optimizers
from .activations import Activation
from .base import Layer, layer_rng, user_stacklevel
from .conv import Conv2D
from .layers import MaxPool2D, ReLU
from .losses import SoftmaxCrossEntropy
from .progress import Progress

__all__ = ["Sequential"]


def _class_ids(y: np.ndarray) -> np.ndarray:
    """Integer labels from ints or one-hot/probability rows."""
    y = np.asarray(y)
    return y.argmax(axis=1) if y.ndim == 2 else y


def _is_relu(layer: Layer) -> bool:
    return type(layer) is ReLU or (type(layer) is Activation and layer.activation.name == "relu")


def relu_fuses(layer: Layer, nxt: Layer) -> bool:
    """Whether ``layer`` can compute ``nxt``'s ReLU in its own forward."""
    if type(layer) is not Conv2D or layer.activation.name != "linear":
        return False
    return _is_relu(nxt) and layer._fuses_relu()


def _relu_output(layer: Layer) -> Optional[np.ndarray]:
    """``layer``'s last output when it is a ReLU's: a ReLU layer's, or a Conv2D's with
    ``activation="relu"``; else None."""
    if _is_relu(layer) or (type(layer) is Conv2D and layer.activation.name == "relu"):
        return getattr(layer, "_y", None)
    return None


def relu_feeds(relu: Layer, layer: Layer) -> bool:
    """Whether ``layer``'s last forward input was exactly the last output of ``relu`` (a
    ReLU layer, or a Conv2D with a ReLU activation: the same array), so that ``layer`` can
    return its input gradient through that ReLU."""
    y = _relu_output(relu)
    if y is None or y is not getattr(layer, "_x", None):
        return False
    if type(layer) is Conv2D:
        return layer.input_grad and layer._fuses_relu()
    return type(layer) is MaxPool2D and layer.input_grad and layer.fuses_relu_backward()


def forward_layer(layers: Sequence[Layer], i: int, x: np.ndarray, training: bool) -> np.ndarray:
    """Layer ``i``'s forward as ``Sequential`` runs it: a linear Conv2D followed by a ReLU
    computes the ReLU in its store, and the ReLU takes that output."""
    if i > 0 and relu_fuses(layers[i - 1], layers[i]):
        return layers[i].take_relu_output(x)
    if i + 1 < len(layers) and relu_fuses(layers[i], layers[i + 1]):
        return layers[i].forward_then_relu(x, training=training)
    return layers[i].forward(x, training=training)


def backward_layer(layers: Sequence[Layer], i: int, grad: np.ndarray,
                   through: bool) -> Tuple[Optional[np.ndarray], bool]:
    """Layer ``i``'s backward as ``Sequential`` runs it (last layer first): a Conv2D or
    MaxPool2D whose input was a ReLU's output returns its input gradient through that ReLU,
    which then passes it on (a ReLU layer), or skips its own ReLU activation's backward (a
    Conv2D). ``through``: the layer after this one did that (from the previous call);
    returns the gradient and ``through`` for the next call."""
    layer = layers[i]
    feeds = i > 0 and relu_feeds(layers[i - 1], layer)
    if through and not _is_relu(layer):  # a Conv2D whose ReLU activation was applied
        return layer.backward_after_relu(grad, through_relu=feeds), feeds
    if through:
        return layer.passed_through(grad), False
    if feeds:
        return layer.backward_through_relu(grad), True
    return layer.backward(grad), False


class Sequential:
    """Layers applied in order; trained with a loss and an optimiser.

    Parameters
    ----------
    layers : iterable of Layer, optional
    name : str, optional

    Examples
    --------
    >>> from fastconv import nn
    >>> model = nn.Sequential([nn.Conv2D(8, 3), nn.ReLU(), nn.Flatten(), nn.Dense(10)])
    >>> model.compile(optimizer=nn.Adam(1e-3))            # doctest: +ELLIPSIS
    <...Sequential...>
    """

    def __init__(self, layers: Optional[Iterable[Layer]] = None, name: Optional[str] = None) -> None:
        self.layers: List[Layer] = []
        self.name = name or "sequential"
        for layer in layers or ():
            self.add(layer)
        self.loss = SoftmaxCrossEntropy()
        self.optimizer: Optional[optimizers.Optimizer] = None

    def add(self, layer: Layer) -> None:
        """Append a layer.

        Parameters
        ----------
        layer : Layer
        """
        if not (hasattr(layer, "forward") and hasattr(layer, "backward")):
            raise TypeError(f"expected a layer with forward/backward, got {type(layer).__name__}")
        names = {getattr(other, "name", None) for other in self.layers}
        if getattr(layer, "name", None) in names:  # Keras-style unique names: dense, dense_1, ...
            base, k = layer.name, 1
            while f"{base}_{k}" in names:
                k += 1
            layer.name = f"{base}_{k}"
        self.layers.append(layer)

    def compile(self, optimizer: Union[str, optimizers.Optimizer] = "adam",
                loss: Optional[SoftmaxCrossEntropy] = None) -> "Sequential":
        """Choose the optimiser and the loss (default: fused softmax cross-entropy).

        Parameters
        ----------
        optimizer : "adam", "sgd" or Optimizer
        loss : SoftmaxCrossEntropy-like, optional
            Any object with ``forward(outputs, labels) -> float`` and ``backward()``.

        Returns
        -------
        self
        """
        self.optimizer = optimizers.get(optimizer)
        if loss is not None:
            if not (callable(getattr(loss, "forward", None)) and callable(getattr(loss, "backward", None))):
                hint = (" (loss names such as Keras's are not taken: the default, fused softmax "
                        "cross-entropy on logits, is the one loss built in)" if isinstance(loss, str) else "")
                raise TypeError(f"loss must be an object with forward(outputs, labels) and backward(), "
                                f"e.g. nn.SoftmaxCrossEntropy(); got {loss!r}{hint}")
            self.loss = loss
        return self

    # ------------------------------------------------------------------ passes
    def forward(self, x: np.ndarray, training: bool = False) -> np.ndarray:
        """Run every layer in order.

        Parameters
        ----------
        x : ndarray
        training : bool

        Returns
        -------
        ndarray : the last layer's output (logits for a classifier), a new array
        """
        return self._forward(x, training)

    __call__ = forward

    #: When True, train_on_batch (and fit) lets the layers keep their outputs and
    #: gradients in buffers reused across steps, so a warm step allocates next to nothing.
    reuse_buffers: bool = True

    @contextlib.contextmanager
    def kept_buffers(self) -> Iterator[None]:
        """Context: the layers write into buffers they keep across calls (see
        :attr:`Layer.reuse_buffers`). Only inside a training step: the arrays a layer
        returns are overwritten by its next call, so inference (``forward``, ``predict``,
        possibly from several threads at once) always gets new arrays."""
        if not self.reuse_buffers:
            yield
            return
        before = [layer.reuse_buffers for layer in self.layers]
        for layer in self.layers:
            layer.reuse_buffers = True
        try:
            yield
        finally:
            for layer, b in zip(self.layers, before):
                layer.reuse_buffers = b

    def _forward(self, x: np.ndarray, training: bool) -> np.ndarray:
        """forward() without the final copy: the result may be a layer's kept buffer.

        A linear Conv2D followed by a ReLU layer runs as one: the ReLU is the kernels'
        post-op (``conv2d(activation="relu")``) and the ReLU layer takes the result, so the
        conv output is written once rather than written, read and written again (a ReLU
        pass was 2-3 % of a CIFAR training step). Results are the same as layer by layer."""
        for i in range(len(self.layers)):
            x = forward_layer(self.layers, i, x, training)
        return x

    def backward(self, grad_output: np.ndarray, input_grad: bool = True) -> Optional[np.ndarray]:
        """Back-propagate through every layer in reverse; layers store their grads.

        A Conv2D whose input was a ReLU layer's output returns its input gradient through
        that ReLU as it stores it (``conv2d_backward(through_relu=True)``), a MaxPool2D by
        masking its quarter-size gradient, and the ReLU passes it on: one pass less over
        the activation. Same results as layer by layer.

        Parameters
        ----------
        grad_output : ndarray
            Gradient of the loss w.r.t. the last output.

        input_grad : bool, default True
            False lets the first layer skip the gradient w.r.t. the model input (a
            training step does not need it); then None is returned.

        Returns
        -------
        ndarray : gradient w.r.t. the model input (None when ``input_grad`` is False)
        """
        if not self.layers:
            return grad_output
        first = self.layers[0]
        previous = first.input_grad
        first.input_grad = input_grad
        try:
            through = False
            for i in range(len(self.layers) - 1, -1, -1):
                grad_output, through = backward_layer(self.layers, i, grad_output, through)
                if grad_output is None and i > 0:
                    raise ValueError(f"{self.layers[i].name} returned no input gradient, but layers before it need one")
        finally:
            first.input_grad = previous
        return grad_output

    def parameters(self) -> Dict[str, np.ndarray]:
        """Every trainable array, keyed ``"<layer index>.<name>"`` (e.g. ``"0.kernel"``).

        Returns
        -------
        dict of str to ndarray (the live arrays, not copies)
        """
        return {f"{i}.{k}": v for i, layer in enumerate(self.layers) for k, v in layer.params.items()}

    def gradients(self) -> Dict[str, np.ndarray]:
        """The gradients from the last backward, with the keys of :meth:`parameters`.

        Returns
        -------
        dict of str to ndarray
        """
        return {f"{i}.{k}": v for i, layer in enumerate(self.layers) for k, v in layer.grads.items()}

    def train_on_batch(self, x: np.ndarray, y: np.ndarray) -> Tuple[float, float]:
        """One optimiser step on one batch.

        Parameters
        ----------
        x, y : ndarray
            Inputs and labels.

        Returns
        -------
        loss, accuracy : float
            Of the batch, before the step (as Keras reports them).
        """
        if self.optimizer is None:
            self.compile()
        self._warn_softmax_twice()
        with self.kept_buffers():
            out = self._forward(x, training=True)
            loss = self.loss.forward(out, y)
            self.backward(self.loss.backward(), input_grad=False)
        self.optimizer.update(self.parameters(), self.gradients())
        return loss, float(np.mean(out.argmax(axis=1) == _class_ids(y)))

    def _warn_softmax_twice(self) -> None:
        """Once a model: the built-in loss takes logits, so a last layer that applies softmax
        (a Keras classifier loaded as it was saved) trains on softmax of softmax, whose loss
        stalls (about 1.46 in an interop audit's fine-tuning) without an error."""
        if getattr(self, "_softmax_checked", False) or not self.layers:
            return
        self._softmax_checked = True
        last = self.layers[-1]
        if isinstance(self.loss, SoftmaxCrossEntropy) and getattr(getattr(last, "activation", None), "name", None) == "softmax":
            warnings.warn(f"the last layer ({last.name}) applies softmax, and the loss (SoftmaxCrossEntropy) takes "
                          "logits: training would take the softmax twice. Set that layer's activation to linear "
                          "for training (layer.activation = nn.activations.get('linear')); predictions' argmax "
                          "is the same either way (see docs/interop.md).", UserWarning, stacklevel=user_stacklevel())

    # ------------------------------------------------------------------ loops
    def fit(self, x: np.ndarray, y: np.ndarray, epochs: int = 1, batch_size: int = 32,
            validation_data: Optional[Tuple[np.ndarray, np.ndarray]] = None, shuffle: bool = True,
            seed=None, verbose: int = 1) -> Dict[str, List[float]]:
        """Train with mini-batches.

        Parameters
        ----------
        x : ndarray, shape (N, ...)
        y : ndarray, shape (N,) of ints or (N, K)
        epochs : int
        batch_size : int
        validation_data : (x_val, y_val), optional
            Evaluated after every epoch.
        shuffle : bool
            Reshuffle the samples every epoch.
        seed : int, numpy.random.Generator or None
            Seeds the shuffling.
        verbose : int
            0 silent; 1 progress bar and one line per epoch; 2 one line per epoch.

        Returns
        -------
        history : dict of lists, one value per epoch
            ``loss``, ``accuracy`` (training, averaged over the epoch's batches),
            ``time`` (seconds of training), ``images_per_s`` and, with validation data,
            ``val_loss`` and ``val_accuracy``.
        """
        x, y = np.asarray(x), np.asarray(y)
        if len(x) != len(y):
            raise ValueError(f"x has {len(x)} samples but y has {len(y)}")
        if batch_size < 1 or epochs < 0:
            raise ValueError("batch_size must be >= 1 and epochs >= 0")
        if self.optimizer is None:
            self.compile()
        rng = layer_rng(seed)
        keys = ["loss", "accuracy", "time", "images_per_s"]
        if validation_data is not None:
            keys += ["val_loss", "val_accuracy"]
        history: Dict[str, List[float]] = {k: [] for k in keys}
        n = len(x)
        for epoch in range(epochs):
            order = rng.permutation(n) if shuffle else np.arange(n)
            bar = Progress(n, f"epoch {epoch + 1}/{epochs}", enabled=verbose == 1)
            t0 = time.perf_counter()
            loss_sum = correct = 0.0
            for start in range(0, n, batch_size):
                idx = order[start:start + batch_size]
                loss, acc = self.train_on_batch(x[idx], y[idx])
                loss_sum += loss * len(idx)
                correct += acc * len(idx)
                bar.update(len(idx), loss)
            seconds = time.perf_counter() - t0
            bar.close()
            history["loss"].append(loss_sum / max(n, 1))
            history["accuracy"].append(correct / max(n, 1))
            history["time"].append(seconds)
            history["images_per_s"].append(n / max(seconds, 1e-12))
            line = (f"epoch {epoch + 1}/{epochs} - loss {history['loss'][-1]:.4f} - "
                    f"accuracy {history['accuracy'][-1]:.4f}")
            if validation_data is not None:
                val = self.evaluate(*validation_data, batch_size=max(batch_size, 256))
                history["val_loss"].append(val["loss"])
                history["val_accuracy"].append(val["accuracy"])
                line += f" - val_loss {val['loss']:.4f} - val_accuracy {val['accuracy']:.4f}"
            line += f" - {seconds:.2f} s - {n / max(seconds, 1e-12):.0f} images/s"
            if verbose:
                print(line, flush=True)
        return history

    def predict(self, x: np.ndarray, batch_size: int = 256) -> np.ndarray:
        """Outputs of the last layer (logits) in inference mode, batch by batch.

        Use :func:`fastconv.nn.softmax` on them for probabilities.

        Parameters
        ----------
        x : ndarray, or a dask array chunked along the batch (then the result is a lazy
            dask array, see :func:`fastconv.dask.predict`)
        batch_size : int

        Returns
        -------
        ndarray
        """
        if hasattr(x, "__dask_graph__"):  # a dask array: batch-chunked, lazy (fastconv[dask])
            from ..dask import predict as dask_predict
            return dask_predict(self, x, batch_size=batch_size)
        x = np.asarray(x)
        outs = [self._forward(x[i:i + batch_size], training=False) for i in range(0, len(x), batch_size)]
        return np.concatenate(outs) if outs else np.empty((0,))

    def evaluate(self, x: np.ndarray, y: np.ndarray, batch_size: int = 256) -> Dict[str, float]:
        """Mean loss and accuracy in inference mode.

        Parameters
        ----------
        x, y : ndarray
        batch_size : int

        Returns
        -------
        dict with ``loss`` and ``accuracy``
        """
        out = self.predict(x, batch_size)
        y = np.asarray(y)
        return {"loss": float(self.loss.forward(out, y)),
                "accuracy": float(np.mean(out.argmax(axis=1) == _class_ids(y)))}

    # ------------------------------------------------------------------ weights
    def get_weights(self) -> List[np.ndarray]:
        """Copies of every trainable array, layer by layer.

        Returns
        -------
        list of ndarray
        """
        return [w for layer in self.layers for w in layer.get_weights()]

    def save(self, path: Union[str, os.PathLike]) -> None:
        """Write the weights to an ``.npz`` file (keys ``"<layer>.<param>"``).

        Parameters
        ----------
        path : str or path-like
            NumPy appends ``.npz`` if missing.
        """
        arrays = dict(self.parameters())
        for i, layer in enumerate(self.layers):  # BatchNormalization's moving statistics
            arrays.update({f"{i}.{k}": v for k, v in getattr(layer, "non_trainable", {}).items()})
        arrays["__layers__"] = np.array([type(layer).__name__ for layer in self.layers])
        np.savez(path, **arrays)

    def load(self, path: Union[str, os.PathLike]) -> "Sequential":
        """Read weights saved by :meth:`save` into this model (same architecture).

        Unbuilt layers are built from the saved shapes.

        Parameters
        ----------
        path : str or path-like

        Returns
        -------
        self (so ``build_model().load(path).predict(x)`` chains)
        """
        with np.load(path, allow_pickle=False) as data:
            names = [type(layer).__name__ for layer in self.layers]
            saved = list(data["__layers__"]) if "__layers__" in data else None
            if saved is not None and saved != names:
                raise ValueError(f"{path}: saved layers {saved} do not match this model's {names}")
            for i, layer in enumerate(self.layers):
                keys = sorted((k for k in data.files if k.split(".", 1)[0] == str(i)),
                              key=lambda k: 0 if k.endswith(".kernel") else 1)
                if keys:
                    layer.set_weights([data[k] for k in keys])
                elif layer.params:
                    raise ValueError(f"{path}: no weights for layer {i} ({layer.name})")
        return self

    # ------------------------------------------------------ Keras and PyTorch files
    # (thin wrappers: the work is in keras_io.py and torch_io.py; h5py is imported there)
    def save_keras(self, path: Union[str, os.PathLike], input_shape: Optional[Sequence[Optional[int]]] = None) -> None:
        """Write a Keras 3 ``.keras`` file (see :func:`fastconv.nn.keras_io.save_keras`)."""
        from .keras_io import save_keras
        save_keras(self, path, input_shape)

    def load_weights(self, path: Union[str, os.PathLike]) -> None:
        """Read a Keras ``.weights.h5`` (or ``.keras``) file's weights, layers matched as Keras
        matches them: in order within each Keras class (see :func:`fastconv.nn.keras_io.load_weights`)."""
        from .keras_io import load_weights
        load_weights(self, path)

    def save_weights(self, path: Union[str, os.PathLike]) -> None:
        """Write a Keras ``.weights.h5`` file (see :func:`fastconv.nn.keras_io.save_weights`)."""
        from .keras_io import save_weights
        save_weights(self, path)

    def load_state_dict(self, state, strict: bool = True) -> None:
        """Load a PyTorch-style state dict (``"<index>.weight"``, ... of NumPy or torch arrays)
        (see :func:`fastconv.nn.torch_io.load_state_dict`)."""
        from .torch_io import load_state_dict
        load_state_dict(self, state, strict=strict)

    def summary(self, input_shape: Sequence[Optional[int]]) -> str:
        """A table of output shapes and parameter counts for ``input_shape``.

        Parameters
        ----------
        input_shape : sequence
            Including the batch axis (may be None).

        Returns
        -------
        str
        """
        rows, shape, total = [], tuple(input_shape), 0
        for layer in self.layers:
            _ensure_built(layer, shape)
            shape = layer.compute_output_shape(shape)
            count = layer.count_params()
            total += count
            rows.append(f"{layer.name:<14}{type(layer).__name__:<12}{str(shape):<24}{count:>10}")
        head = f"{'layer':<14}{'type':<12}{'output shape':<24}{'params':>10}"
        return "\n".join([head, "-" * len(head), *rows, "-" * len(head), f"total params: {total}"])


def _ensure_built(layer: Layer, input_shape) -> None:
    """Build a Conv2D or Dense from the shape it will receive (for :meth:`Sequential.summary`)."""
    if getattr(layer, "built", True):
        return
    if hasattr(layer, "build_for_input_shape"):
        layer.build_for_input_shape(input_shape)
        return
    from .conv import Conv2D
    from .layers import Dense
    if isinstance(layer, Conv2D):
        layer.build(input_shape[1] if layer.data_format == "channels_first" else input_shape[3])
    elif isinstance(layer, Dense):
        layer.build(input_shape[1])
