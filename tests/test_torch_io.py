"""PyTorch models in fastconv.nn: from_torch against the torch module's eval() outputs,
load_state_dict from NumPy arrays (safetensors) without torch, and the errors."""

import numpy as np
import pytest

from fastconv import nn

torch = pytest.importorskip("torch", reason="PyTorch not installed (pip install torch)")
tnn = torch.nn


def _randomise_bn(module, seed=0):
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for m in module.modules():
            if isinstance(m, (tnn.BatchNorm2d, tnn.BatchNorm1d)):
                m.running_mean.copy_(torch.rand(m.num_features, generator=g) * 2 - 1)
                m.running_var.copy_(torch.rand(m.num_features, generator=g) * 1.5 + 0.5)
                if m.affine:
                    m.weight.copy_(torch.rand(m.num_features, generator=g) + 0.5)
                    m.bias.copy_(torch.rand(m.num_features, generator=g) - 0.5)
    return module


def _check(module, shape, dtype=torch.float64, tol=1e-10):
    torch.manual_seed(0)
    module = _randomise_bn(module.to(dtype)).eval()
    x = np.random.default_rng(1).standard_normal(shape)
    ours = nn.from_torch(module)
    with torch.no_grad():
        want = module(torch.tensor(x, dtype=dtype)).numpy()
    got = ours.predict(x)
    assert got.shape == want.shape
    np.testing.assert_allclose(got, want, rtol=tol, atol=tol)
    return ours, x, want


MODULES = {
    "conv_stride_pad": (lambda: tnn.Sequential(tnn.Conv2d(3, 4, 3, stride=2, padding=1)), (2, 3, 9, 8)),
    "conv_groups_dilation": (lambda: tnn.Sequential(tnn.Conv2d(4, 6, (3, 2), dilation=(2, 1), groups=2,
                                                               padding=(2, 0), bias=False)), (2, 4, 9, 7)),
    "conv_same": (lambda: tnn.Sequential(tnn.Conv2d(2, 3, 4, padding="same")), (1, 2, 7, 6)),
    "conv_transpose": (lambda: tnn.Sequential(tnn.ConvTranspose2d(4, 6, 3, stride=2, padding=1, output_padding=1,
                                                                  groups=2)), (2, 4, 4, 5)),
    "conv_transpose_dilated": (lambda: tnn.Sequential(tnn.ConvTranspose2d(3, 2, 3, dilation=2, output_padding=1,
                                                                          padding=0)), (1, 3, 4, 4)),
    "conv1d": (lambda: tnn.Sequential(tnn.Conv1d(3, 4, 3, stride=2, padding=1, dilation=1)), (2, 3, 11)),
    "batchnorm": (lambda: tnn.Sequential(tnn.Conv2d(2, 3, 3), tnn.BatchNorm2d(3), tnn.ReLU()), (2, 2, 6, 6)),
    "pooling": (lambda: tnn.Sequential(tnn.MaxPool2d(2), tnn.AvgPool2d(3, stride=1, padding=1),
                                       tnn.AvgPool2d(2, padding=1, count_include_pad=False)), (2, 2, 8, 9)),
    "mlp_head": (lambda: tnn.Sequential(tnn.Conv2d(1, 4, 3), tnn.ReLU(), tnn.Flatten(), tnn.Dropout(0.5),
                                        tnn.Linear(4 * 5 * 5, 6), tnn.BatchNorm1d(6), tnn.Tanh(), tnn.Linear(6, 3),
                                        tnn.Sigmoid()), (3, 1, 7, 7)),
}


@pytest.mark.parametrize("case", sorted(MODULES))
def test_from_torch_matches_eval_outputs(case):
    make, shape = MODULES[case]
    _check(make(), shape)


def test_from_torch_float32_cnn_and_state_dict_without_torch(tmp_path):
    """A float32 tutorial CNN; then its weights through safetensors into a model built by hand."""
    module = tnn.Sequential(
        tnn.Conv2d(1, 8, 3, padding=1), tnn.BatchNorm2d(8), tnn.ReLU(), tnn.MaxPool2d(2),
        tnn.Conv2d(8, 16, 3, stride=2, padding=1), tnn.ReLU(), tnn.Flatten(), tnn.Linear(16 * 4 * 4, 10))
    ours, x, want = _check(module, (4, 1, 16, 16), dtype=torch.float32, tol=2e-5)
    assert ours.layers[0].kernel.dtype == np.float32
    safetensors_numpy = pytest.importorskip("safetensors.numpy", reason="safetensors not installed")
    path = tmp_path / "m.safetensors"
    safetensors_numpy.save_file({k: v.detach().numpy() for k, v in module.state_dict().items()}, str(path))
    state = safetensors_numpy.load_file(str(path))
    assert all(isinstance(v, np.ndarray) for v in state.values())
    by_hand = nn.Sequential([nn.Conv2D(8, 3, padding=1), nn.BatchNormalization(epsilon=1e-5), nn.ReLU(),
                             nn.MaxPool2D(2), nn.Conv2D(16, 3, strides=2, padding=1), nn.ReLU(), nn.Flatten(),
                             nn.Dense(10)])
    by_hand.load_state_dict(state)
    np.testing.assert_allclose(by_hand.predict(x.astype(np.float32)), want, rtol=2e-5, atol=2e-5)


def test_from_torch_model_trains():
    module = tnn.Sequential(tnn.Conv2d(1, 4, 3), tnn.ReLU(), tnn.Flatten(), tnn.Linear(4 * 4 * 4, 3))
    ours = nn.from_torch(module).compile(nn.SGD(0.1))
    rng = np.random.default_rng(2)
    x = rng.standard_normal((12, 1, 6, 6)).astype(np.float32)
    y = rng.integers(0, 3, 12)
    before = ours.evaluate(x, y)["loss"]
    for _ in range(20):
        ours.train_on_batch(x, y)
    assert ours.evaluate(x, y)["loss"] < before


def test_torch_io_errors():
    with pytest.raises(ValueError, match="module 1 of class LSTM is not supported"):
        nn.from_torch(tnn.Sequential(tnn.Flatten(), tnn.LSTM(3, 3)))
    with pytest.raises(ValueError, match=r"module 0 \(Conv2d\): padding_mode='reflect'"):
        nn.from_torch(tnn.Sequential(tnn.Conv2d(1, 1, 3, padding=1, padding_mode="reflect")))
    with pytest.raises(ValueError, match=r"module 0 \(MaxPool2d\): ceil_mode=True"):
        nn.from_torch(tnn.Sequential(tnn.MaxPool2d(2, ceil_mode=True)))
    with pytest.raises(TypeError, match="must be a torch.nn.Sequential"):
        nn.from_torch(tnn.Conv2d(1, 1, 3))
    model = nn.Sequential([nn.Conv2D(2, 3), nn.ReLU(), nn.Dense(3)])
    state = {"0.weight": np.zeros((2, 1, 3, 3)), "0.bias": np.zeros(2)}
    with pytest.raises(KeyError, match=r"state dict has no 2.weight, 2.bias for layer 2 \(Dense\)"):
        model.load_state_dict(state)
    state.update({"2.weight": np.zeros((3, 4)), "2.bias": np.zeros(3), "5.weight": np.zeros(1)})
    with pytest.raises(KeyError, match=r"unexpected keys in the state dict: \['5.weight'\]"):
        model.load_state_dict(state)
    model.load_state_dict(state, strict=False)
    assert model.layers[2].params["kernel"].shape == (4, 3)  # Linear's (out, in) transposed
    with pytest.raises(ValueError, match=r"layer 0 \(Conv2D\)"):
        model.load_state_dict({**state, "0.weight": np.zeros((2, 1, 5, 5))}, strict=False)


def test_from_torch_named_children_and_subclasses():
    # Sequential(OrderedDict(...)) keys its state by the children's names ("conv1.weight"),
    # and a subclass of Sequential is one: both convert, with the same outputs
    from collections import OrderedDict

    class Net(tnn.Sequential):
        pass

    torch.manual_seed(0)
    named = tnn.Sequential(OrderedDict([("conv1", tnn.Conv2d(1, 4, 3)), ("relu1", tnn.ReLU()),
                                        ("flat", tnn.Flatten()), ("fc", tnn.Linear(4 * 6 * 6, 3))])).eval()
    sub = Net(tnn.Conv2d(1, 2, 3), tnn.Flatten(), tnn.Linear(2 * 6 * 6, 2)).eval()
    x = np.random.default_rng(9).standard_normal((2, 1, 8, 8)).astype(np.float32)
    for module in (named, sub):
        with torch.no_grad():
            expected = module(torch.from_numpy(x)).numpy()
        np.testing.assert_allclose(nn.from_torch(module).predict(x), expected, rtol=1e-5, atol=1e-6)
    model = nn.Sequential([nn.Conv2D(4, 3), nn.ReLU(), nn.Flatten(), nn.Dense(3)])
    with pytest.raises(KeyError, match="keys name modules .*conv1.*convert the module itself with from_torch"):
        model.load_state_dict(named.state_dict())


def test_from_torch_keeps_a_module_used_twice():
    # one ReLU instance at two places: named_children() yields it once
    torch.manual_seed(1)
    act = tnn.ReLU()
    module = tnn.Sequential(tnn.Conv2d(1, 3, 3), act, tnn.Conv2d(3, 2, 3), act, tnn.Flatten(),
                            tnn.Linear(2 * 4 * 4, 3)).eval()
    x = np.random.default_rng(10).standard_normal((2, 1, 8, 8)).astype(np.float32)
    model = nn.from_torch(module)
    assert [type(layer).__name__ for layer in model.layers] == ["Conv2D", "ReLU", "Conv2D", "ReLU", "Flatten", "Dense"]
    with torch.no_grad():
        np.testing.assert_allclose(model.predict(x), module(torch.from_numpy(x)).numpy(), rtol=1e-5, atol=1e-6)
