"""Keras files in fastconv.nn, checked against Keras 3 itself (torch backend): every
supported layer saved by Keras, loaded with load_keras, predicting what Keras predicts;
fastconv models written with save_keras and opened by keras.saving.load_model; the
weights-only .weights.h5 both ways. The h5py-only tests run without Keras."""

import os
import zipfile

import numpy as np
import pytest

from fastconv import nn

h5py = pytest.importorskip("h5py", reason="Keras files need h5py (pip install h5py)")


@pytest.fixture(scope="module")
def keras():
    os.environ.setdefault("KERAS_BACKEND", "torch")
    try:
        import keras as k
    except Exception as exc:  # ImportError, or a backend that cannot load
        pytest.skip(f"keras (torch backend) not importable: {exc!r} (pip install keras torch)")
    if k.backend.backend() != "torch":
        pytest.skip(f"these tests run Keras on its torch backend, got {k.backend.backend()!r}")
    return k


def _randomise(model, seed=0):
    """Random weights (positive variances for BatchNormalization) so that nothing is trivially zero."""
    rng = np.random.default_rng(seed)
    for layer in model.layers:
        ws = layer.get_weights()
        if not ws:
            continue
        if type(layer).__name__ == "BatchNormalization":
            new = [rng.uniform(0.5, 1.5, w.shape) for w in ws[:-2]]
            new += [rng.uniform(-1, 1, ws[-2].shape), rng.uniform(0.5, 2.0, ws[-1].shape)]
        else:
            new = [rng.standard_normal(w.shape) * 0.5 for w in ws]
        layer.set_weights([w.astype(np.float32) for w in new])


def _compare(keras, layers, input_shape, tmp_path, seed=0, atol=2e-5):
    model = keras.Sequential([keras.Input(input_shape), *layers])
    _randomise(model, seed)
    model.save(tmp_path / "m.keras")
    ours = nn.load_keras(tmp_path / "m.keras")
    x = np.random.default_rng(seed + 1).standard_normal((3, *input_shape)).astype(np.float32)
    want = np.asarray(model.predict(x, verbose=0))
    got = ours.predict(x)
    assert got.shape == want.shape
    np.testing.assert_allclose(got, want, rtol=2e-5, atol=atol)
    return model, ours, x


LAYER_CASES = {
    "conv2d_same_stride2_relu": (lambda L: [L.Conv2D(4, 3, strides=2, padding="same", activation="relu")], (9, 8, 3)),
    "conv2d_groups_dilation": (lambda L: [L.Conv2D(6, (3, 2), dilation_rate=2, groups=2)], (9, 9, 4)),
    "conv2d_even_same_stride2": (lambda L: [L.Conv2D(3, 4, strides=2, padding="same", use_bias=False)], (7, 6, 2)),
    "transpose_same_stride2": (lambda L: [L.Conv2DTranspose(3, 3, strides=2, padding="same")], (4, 5, 2)),
    "transpose_valid_output_padding": (lambda L: [L.Conv2DTranspose(3, 3, strides=2, output_padding=1)], (4, 4, 2)),
    "transpose_same_output_padding": (lambda L: [L.Conv2DTranspose(2, 4, strides=3, padding="same",
                                                                   output_padding=2)], (3, 4, 2)),
    "transpose_kernel_below_stride": (lambda L: [L.Conv2DTranspose(2, 2, strides=3)], (3, 3, 2)),
    "transpose_dilated": (lambda L: [L.Conv2DTranspose(2, 3, dilation_rate=2, activation="tanh")], (4, 4, 3)),
    "depthwise": (lambda L: [L.DepthwiseConv2D(3, strides=2, padding="same", depth_multiplier=2)], (7, 7, 3)),
    "depthwise_dilated": (lambda L: [L.DepthwiseConv2D((3, 2), dilation_rate=2, activation="sigmoid")], (8, 8, 2)),
    "separable": (lambda L: [L.SeparableConv2D(5, 3, depth_multiplier=2, padding="same", activation="relu")],
                  (6, 6, 3)),
    "separable_stride2": (lambda L: [L.SeparableConv2D(4, 3, strides=2)], (9, 9, 2)),
    "conv1d_causal": (lambda L: [L.Conv1D(4, 3, padding="causal", dilation_rate=2)], (10, 3)),
    "conv1d_same_stride2": (lambda L: [L.Conv1D(3, 2, strides=2, padding="same", groups=1, activation="elu")],
                            (9, 2)),
    "batchnorm": (lambda L: [L.BatchNormalization()], (4, 4, 3)),
    "batchnorm_options": (lambda L: [L.BatchNormalization(epsilon=0.1, center=False)], (3, 3, 2)),
    # symmetric "same" padding only: where TensorFlow pads one side more, Keras's torch backend
    # averages replicated edge pixels instead of leaving the padding out (fastconv: TensorFlow's)
    "avgpool_same": (lambda L: [L.AveragePooling2D(3, strides=2, padding="same")], (7, 9, 2)),
    "avgpool": (lambda L: [L.AveragePooling2D(2)], (6, 7, 2)),
    "maxpool_same": (lambda L: [L.MaxPooling2D(2, padding="same")], (5, 7, 2)),
    "global_avg": (lambda L: [L.GlobalAveragePooling2D(), L.Dense(3, activation="softmax")], (4, 5, 3)),
    "global_avg_keepdims": (lambda L: [L.GlobalAveragePooling2D(keepdims=True)], (4, 5, 3)),
    "zero_padding": (lambda L: [L.ZeroPadding2D(((1, 2), (0, 1))), L.Conv2D(2, 3)], (4, 4, 2)),
    "flatten_dense_hwc_order": (lambda L: [L.Conv2D(3, 2), L.Flatten(), L.Dropout(0.3), L.Dense(4),
                                           L.Activation("sigmoid"), L.ReLU()], (4, 5, 2)),
}


@pytest.mark.parametrize("case", sorted(LAYER_CASES))
def test_load_keras_predicts_what_keras_predicts(keras, tmp_path, case):
    make, shape = LAYER_CASES[case]
    _compare(keras, make(keras.layers), shape, tmp_path)


def _tutorial_cnn(keras):
    """A Keras-tutorial CNN: conv-BN-relu blocks, 'same' stride 2, separable, pooling, softmax."""
    L = keras.layers
    return [L.Conv2D(8, 3, padding="same", activation="relu"), L.BatchNormalization(),
            L.Conv2D(8, 3, strides=2, padding="same"), L.BatchNormalization(), L.Activation("relu"),
            L.DepthwiseConv2D(3, padding="same"), L.SeparableConv2D(12, 3, activation="relu"),
            L.MaxPooling2D(2), L.Dropout(0.25), L.Flatten(), L.Dense(16, activation="relu"),
            L.Dense(10, activation="softmax")]


def test_round_trip_through_keras(keras, tmp_path):
    """Keras -> load_keras -> save_keras -> keras.saving.load_model, and .weights.h5 both ways."""
    model, ours, x = _compare(keras, _tutorial_cnn(keras), (14, 14, 1), tmp_path)
    ours.save_keras(tmp_path / "back.keras")
    with zipfile.ZipFile(tmp_path / "back.keras") as z:
        assert {"config.json", "metadata.json", "model.weights.h5"} <= set(z.namelist())
    back = keras.saving.load_model(tmp_path / "back.keras")
    np.testing.assert_allclose(np.asarray(back.predict(x, verbose=0)), ours.predict(x), rtol=2e-5, atol=2e-6)
    assert [type(a).__name__ for a in back.layers] == [type(a).__name__ for a in model.layers]
    # weights only: fastconv writes, Keras reads; Keras writes, fastconv reads
    for layer in ours.layers:
        for p in layer.params.values():
            p *= 0.5
    ours.save_weights(tmp_path / "ours.weights.h5")
    model.load_weights(tmp_path / "ours.weights.h5")
    np.testing.assert_allclose(np.asarray(model.predict(x, verbose=0)), ours.predict(x), rtol=2e-5, atol=2e-6)
    _randomise(model, seed=5)
    model.save_weights(tmp_path / "keras.weights.h5")
    ours.load_weights(tmp_path / "keras.weights.h5")
    np.testing.assert_allclose(ours.predict(x), np.asarray(model.predict(x, verbose=0)), rtol=2e-5, atol=2e-6)


def test_fastconv_trained_model_opens_in_keras(keras, tmp_path):
    """A model built and trained in fastconv.nn (channels_last, as Keras) runs the same in Keras."""
    rng = np.random.default_rng(3)
    model = nn.Sequential([
        nn.Conv2D(6, 3, padding="same", strides=2, data_format="channels_last", activation="relu", seed=0),
        nn.BatchNormalization(axis=-1),
        nn.Conv2DTranspose(4, 3, strides=2, padding="same", data_format="channels_last", seed=1),
        nn.AveragePooling2D(2, data_format="channels_last"),
        nn.ZeroPadding2D(1, data_format="channels_last"),
        nn.DepthwiseConv2D(3, depth_multiplier=2, data_format="channels_last", seed=2),
        nn.GlobalAveragePooling2D(data_format="channels_last"),
        nn.Dense(3, seed=3),
    ]).compile(nn.Adam(1e-2))
    x = rng.standard_normal((16, 8, 8, 2)).astype(np.float32)
    y = rng.integers(0, 3, 16)
    model.fit(x, y, epochs=2, batch_size=8, verbose=0)
    model.save_keras(tmp_path / "fc.keras", input_shape=(None, 8, 8, 2))
    k = keras.saving.load_model(tmp_path / "fc.keras")
    np.testing.assert_allclose(np.asarray(k.predict(x, verbose=0)), model.predict(x), rtol=2e-5, atol=2e-5)


def test_channels_first_fastconv_model_opens_in_keras(keras, tmp_path):
    """fastconv's native NCHW layers go to Keras as channels_first ones; Flatten's order holds."""
    model = nn.Sequential([nn.Conv2D(4, 3, seed=0), nn.ReLU(), nn.MaxPool2D(2), nn.Flatten(), nn.Dense(3, seed=1)])
    x = np.random.default_rng(4).standard_normal((5, 2, 8, 8)).astype(np.float32)
    model.forward(x)
    model.save_keras(tmp_path / "cf.keras", input_shape=(None, 2, 8, 8))
    k = keras.saving.load_model(tmp_path / "cf.keras")
    np.testing.assert_allclose(np.asarray(k.predict(x, verbose=0)), model.predict(x), rtol=2e-5, atol=2e-5)


def test_unsupported_keras_layer_is_named(keras, tmp_path):
    L = keras.layers
    model = keras.Sequential([keras.Input((4, 4, 1)), L.Conv2D(2, 3), L.UpSampling2D(name="up")])
    model.save(tmp_path / "u.keras")
    with pytest.raises(ValueError, match="layer 'up' of class 'UpSampling2D' is not supported"):
        nn.load_keras(tmp_path / "u.keras")
    inp = keras.Input((4, 4, 1))
    functional = keras.Model(inp, L.Conv2D(2, 3)(inp))
    functional.save(tmp_path / "f.keras")
    with pytest.raises(ValueError, match="only Keras Sequential models"):
        nn.load_keras(tmp_path / "f.keras")


# ----------------------------------------------------------------------------- h5py only

def _small_model():
    return nn.Sequential([
        nn.Conv2D(4, 3, padding="same", data_format="channels_last", activation="relu", seed=0),
        nn.SeparableConv2D(3, 3, data_format="channels_last", seed=1),
        nn.BatchNormalization(axis=-1), nn.Flatten(), nn.Dense(5, activation="softmax", seed=2),
    ])


def test_save_keras_then_load_keras_without_keras(tmp_path):
    model = _small_model()
    x = np.random.default_rng(0).standard_normal((4, 6, 6, 2)).astype(np.float32)
    model.forward(x, training=True)  # moves the BatchNormalization statistics
    model.save_keras(tmp_path / "m.keras", input_shape=(None, 6, 6, 2))
    back = nn.load_keras(tmp_path / "m.keras")
    assert [type(a).__name__ for a in back.layers] == [type(a).__name__ for a in model.layers]
    np.testing.assert_allclose(back.predict(x), model.predict(x), rtol=1e-6, atol=1e-7)
    back.save_keras(tmp_path / "again.keras")  # the input shape comes with a loaded model
    with h5py.File(tmp_path / "w.weights.h5", "w"):
        pass
    model.save_weights(tmp_path / "w.weights.h5")
    with h5py.File(tmp_path / "w.weights.h5") as f:  # Keras's layout and layouts
        assert f["layers/conv2d/vars/0"].shape == (3, 3, 2, 4)
        assert f["layers/separable_conv2d/vars/0"].shape == (3, 3, 4, 1)
        assert f["layers/separable_conv2d/vars/1"].shape == (1, 1, 4, 3)
        assert len(f["layers/batch_normalization/vars"]) == 4
    fresh = _small_model()
    fresh.load_weights(tmp_path / "w.weights.h5")
    np.testing.assert_allclose(fresh.predict(x), model.predict(x), rtol=1e-6, atol=1e-7)


def test_keras_io_errors(tmp_path):
    model = _small_model()
    with pytest.raises(ValueError, match="has no weights yet"):
        model.save_keras(tmp_path / "m.keras", input_shape=(None, 6, 6, 2))
    model.forward(np.zeros((1, 6, 6, 2), np.float32))
    with pytest.raises(ValueError, match="input_shape is needed"):
        model.save_keras(tmp_path / "m.keras")
    with pytest.raises(ValueError, match="must end in '.weights.h5'"):
        model.save_weights(tmp_path / "m.h5")
    explicit = nn.Sequential([nn.Conv2D(2, 3, padding=1, data_format="channels_last")])
    explicit.forward(np.zeros((1, 5, 5, 1)))
    with pytest.raises(ValueError, match="padding=1; Keras has only 'valid' and 'same'"):
        explicit.save_keras(tmp_path / "e.keras", input_shape=(None, 5, 5, 1))
    model.save_weights(tmp_path / "w.weights.h5")
    other = nn.Sequential([nn.Dense(5), nn.Dense(3, name="head")])
    with pytest.raises(ValueError, match="no weights for layer 'head' .*looked for layers/dense_1/vars"):
        other.load_weights(tmp_path / "w.weights.h5")
    with pytest.raises(ValueError, match=r"layer 'dense' \(Dense\): the file's weights "
                                         r"\[\(48, 5\), \(5,\)\] do not fit"):
        nn.Sequential([nn.Dense(3)]).load_weights(tmp_path / "w.weights.h5")
    with zipfile.ZipFile(tmp_path / "bad.keras", "w") as z:
        z.writestr("other.txt", "x")
    with pytest.raises(ValueError, match="not a Keras 3 .keras file"):
        nn.load_keras(tmp_path / "bad.keras")


# ----------------------------------------------------------------------------- from an interop audit

@pytest.mark.parametrize("width", [12, 8], ids=["width-ne-channels", "width-eq-channels"])
def test_batchnorm_default_axis_goes_to_keras_as_the_channel_axis(keras, tmp_path, width):
    # axis None is NCHW's channel axis; written as Keras's default -1 it was the width: a shape
    # mismatch in Keras when width != channels, silently other predictions when equal
    model = nn.Sequential([nn.Conv2D(8, 3, padding="same", seed=0), nn.BatchNormalization(), nn.Flatten(),
                           nn.Dense(3, seed=1)])
    x = np.random.default_rng(6).standard_normal((4, 2, width, width)).astype(np.float32)
    model.forward(x, training=True)  # moving statistics away from 0 / 1
    model.save_keras(tmp_path / "bn.keras", input_shape=(None, 2, width, width))
    k = keras.saving.load_model(tmp_path / "bn.keras")
    assert k.layers[1].get_config()["axis"] in (1, [1])
    np.testing.assert_allclose(np.asarray(k.predict(x, verbose=0)), model.predict(x), rtol=2e-5, atol=2e-5)
    np.testing.assert_array_equal(nn.load_keras(tmp_path / "bn.keras").predict(x), model.predict(x))


def test_unsupported_activation_names_the_layer(keras, tmp_path):
    L = keras.layers
    model = keras.Sequential([keras.Input((6, 6, 1)), L.Conv2D(2, 3, activation="gelu", name="my_gelu_conv")])
    model.save(tmp_path / "g.keras")
    with pytest.raises(ValueError, match="layer 'my_gelu_conv' of class 'Conv2D': activation must be .*'gelu'"):
        nn.load_keras(tmp_path / "g.keras")


def test_weights_into_channels_first_flatten_dense_warn(keras, tmp_path):
    # Keras's default model flattens (H, W, C); a channels_first fastconv model (C, H, W): the
    # weights fit, the predictions do not
    L = keras.layers
    k = keras.Sequential([keras.Input((6, 6, 2)), L.Conv2D(3, 3), L.Flatten(), L.Dense(4)])
    k.save_weights(tmp_path / "k.weights.h5")
    k.save(tmp_path / "k.keras")
    for path in ("k.weights.h5", "k.keras"):
        cf = nn.Sequential([nn.Conv2D(3, 3, in_channels=2), nn.Flatten(), nn.Dense(4, in_features=48)])
        with pytest.warns(UserWarning, match=r"Dense rows are in \(H, W, C\) order, these in \(C, H, W\)"):
            cf.load_weights(tmp_path / path)
    import warnings
    cl = nn.Sequential([nn.Conv2D(3, 3, in_channels=2, data_format="channels_last"), nn.Flatten(),
                        nn.Dense(4, in_features=48)])
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        cl.load_weights(tmp_path / "k.weights.h5")
    x = np.random.default_rng(7).standard_normal((3, 6, 6, 2)).astype(np.float32)
    np.testing.assert_allclose(cl.predict(x), np.asarray(k.predict(x, verbose=0)), rtol=2e-5, atol=2e-5)


def test_load_keras_of_a_legacy_or_weights_file_says_what_to_do(tmp_path):
    model = _small_model()
    model.forward(np.zeros((1, 6, 6, 2), np.float32))
    model.save_weights(tmp_path / "w.weights.h5")
    with pytest.raises(ValueError, match=r"not a Keras 3 .keras file \(a zip archive\).*load_weights"):
        nn.load_keras(tmp_path / "w.weights.h5")
    with pytest.raises(FileNotFoundError, match="no such file"):
        nn.load_keras(tmp_path / "typo.keras")


def test_zero_explicit_padding_is_saved_as_valid(tmp_path):
    # from_torch writes torch's default padding=0 as ((0, 0), (0, 0)): Keras's 'valid'
    model = nn.Sequential([nn.Conv2D(2, 3, padding=((0, 0), (0, 0)), data_format="channels_last", seed=0)])
    x = np.random.default_rng(8).standard_normal((2, 5, 5, 1)).astype(np.float32)
    model.forward(x)
    model.save_keras(tmp_path / "z.keras", input_shape=(None, 5, 5, 1))
    back = nn.load_keras(tmp_path / "z.keras")
    assert back.layers[0].padding == "valid"
    np.testing.assert_array_equal(back.predict(x), model.predict(x))


def test_dense_on_images_is_refused_at_load(keras, tmp_path):
    # Keras applies such a Dense along the last axis; fastconv's takes (N, features) and only
    # failed at predict
    L = keras.layers
    model = keras.Sequential([keras.Input((5, 5, 3)), L.Dense(4, name="pixelwise"), L.Flatten(), L.Dense(2)])
    model.save(tmp_path / "d.keras")
    with pytest.raises(ValueError, match=r"layer 'pixelwise' of class 'Dense' takes a 4-D input .*Flatten before it"):
        nn.load_keras(tmp_path / "d.keras")


def test_channels_first_weights_file_round_trip_is_quiet(tmp_path):
    # save_weights records the layout it flattened, so its own file loads back without the
    # (H, W, C) warning meant for Keras's default models (a code review's case)
    import warnings
    model = nn.Sequential([nn.Conv2D(3, 3, seed=0), nn.ReLU(), nn.Flatten(), nn.Dense(2, seed=1)])
    x = np.random.default_rng(11).standard_normal((2, 2, 6, 6)).astype(np.float32)
    model.forward(x)
    model.save_weights(tmp_path / "cf.weights.h5")
    with h5py.File(tmp_path / "cf.weights.h5") as f:
        assert f.attrs["fastconv_flatten_input_format"] == "channels_first"
    back = nn.Sequential([nn.Conv2D(3, 3), nn.ReLU(), nn.Flatten(), nn.Dense(2)])
    back.forward(x)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        back.load_weights(tmp_path / "cf.weights.h5")
    np.testing.assert_array_equal(back.predict(x), model.predict(x))
