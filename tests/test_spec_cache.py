"""The validated-problem cache (_spec.make_spec) must never let through what validation
refuses: True == 1 and (True, 1) == (1, 1), but a bool stride is a TypeError."""
import numpy as np
import pytest

import fastconv
from fastconv import _spec


@pytest.fixture
def xw():
    rng = np.random.default_rng(0)
    return (rng.standard_normal((2, 3, 8, 8)).astype(np.float32),
            rng.standard_normal((4, 3, 3, 3)).astype(np.float32))


@pytest.mark.parametrize("bad, name", [(dict(stride=True), "stride"), (dict(stride=(True, 1)), "stride"),
                                       (dict(dilation=(1, True)), "dilation"), (dict(groups=True), "groups"),
                                       (dict(padding=((False, 1), (1, 1))), "padding")])
def test_cached_problem_still_rejects_bools(xw, bad, name):
    x, w = xw
    good = {k: (1 if k != "padding" else ((0, 1), (1, 1))) for k in bad}
    y = fastconv.conv2d(x, w, **good)  # cached now
    np.testing.assert_allclose(y, fastconv.reference.conv2d(x, w, **good), rtol=1e-5, atol=1e-5)
    with pytest.raises(TypeError, match=name):
        fastconv.conv2d(x, w, **bad)


def test_equal_arguments_share_one_spec_and_its_descriptor():
    a = _spec.make_spec((2, 3, 8, 8), (4, 3, 3, 3), 1, "same", (1, 1), 1, np.float32)
    b = _spec.make_spec((2, 3, 8, 8), (4, 3, 3, 3), 1, "same", (1, 1), 1, np.float32)
    assert a is b
    assert a.desc(2, 0) is b.desc(2, 0)
    assert a.desc(1, 0) is not a.desc(2, 0) and a.desc(1, 0).nthreads == 1
    c = _spec.make_spec((2, 3, 8, 8), (4, 3, 3, 3), 1, "same", (1, 1), 1, np.float64)
    assert c is not a and c.dtype == np.float64


def test_numpy_integer_arguments_bypass_the_cache_and_still_validate():
    s = _spec.make_spec((2, 3, 8, 8), (4, 3, 3, 3), np.int64(2), np.int32(1), 1, 1, np.float32)
    assert s.stride == (2, 2) and s.padding == (1, 1, 1, 1)
    with pytest.raises(ValueError, match="stride"):
        _spec.make_spec((2, 3, 8, 8), (4, 3, 3, 3), np.int64(0), 0, 1, 1, np.float32)
