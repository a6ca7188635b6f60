"""Type-checked, not run: the public API as a user's code calls it (``mypy`` in CI, via
tools/check_types.sh, against the installed package and its py.typed). A lost annotation
or a changed return type of a public name fails the check."""
from typing import Optional, Tuple

import numpy as np
from typing_extensions import assert_type

import fastconv
from fastconv import nn

x = np.zeros((2, 3, 8, 8), np.float32)
w = np.zeros((4, 3, 3, 3), np.float32)

y = fastconv.conv2d(x, w, None, stride=1, padding="same", dilation=1, groups=1, algorithm="auto")
y_relu: np.ndarray = fastconv.conv2d(x, w, padding="same", activation="relu", out=np.empty_like(y))
assert_type(y, np.ndarray)
gx, gw, gb = fastconv.conv2d_backward(y, x, w, padding="same", out=(None, None, None))
assert_type(gx, Optional[np.ndarray])
assert_type(gw, np.ndarray)
assert_type(gb, Optional[np.ndarray])
assert_type(fastconv.conv2d_input_grad(y, w, (2, 3, 8, 8), padding=1), np.ndarray)
assert_type(fastconv.conv2d_weight_grad(y, x, (4, 3, 3, 3), padding=((1, 1), (1, 1))), np.ndarray)
assert_type(fastconv.convolve2d(x[0, 0], w[0, 0], mode="same"), np.ndarray)
assert_type(fastconv.correlate2d(x[0, 0], w[0, 0]), np.ndarray)
assert_type(fastconv.get_num_threads(), int)
fastconv.set_num_threads(None)
with fastconv.threads(1):
    pass
assert_type(fastconv.show_config(), None)
assert_type(fastconv.__version__, str)
assert_type(fastconv.reference.conv2d(x, w), np.ndarray)
shape: Tuple[int, int, int, int] = (2, 3, 8, 8)
assert_type(fastconv.initializers.glorot_uniform(w.shape, dtype="float32"), np.ndarray)

layer = fastconv.Conv2D(8, 3, padding="same")
model = nn.Sequential([layer, nn.ReLU(), nn.MaxPool2D(2), nn.Flatten(), nn.Dense(10)])
model.compile(optimizer=nn.Adam(1e-3))
assert_type(model.train_on_batch(x, np.zeros(2, np.int64)), Tuple[float, float])
assert_type(model.predict(x), np.ndarray)
