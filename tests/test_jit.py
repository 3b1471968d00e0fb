"""@ember.jit: traced numpy-like functions against numpy, signature caching, symbolic sizes, and errors that point
at the user's line."""
from __future__ import annotations

import inspect
import os

import numpy as np
import pytest

import ember
from ember import jnp
from ember.graph import OpError

HERE = os.path.basename(__file__)
rng = np.random.default_rng(0)


def rand(*shape: int, dtype: str = "float32") -> np.ndarray:
    return rng.standard_normal(shape).astype(dtype)


def close(got: np.ndarray, want: np.ndarray, rtol: float = 1e-5, atol: float = 1e-6) -> None:
    """Values match numpy's and so does the shape (which assert_allclose would broadcast away)."""
    np.testing.assert_allclose(got, want, rtol=rtol, atol=atol)
    assert np.shape(got) == np.shape(want)


def line_of(fn, text: str) -> int:
    """The line of `fn`'s source containing `text`, as errors should quote it."""
    lines, first = inspect.getsourcelines(getattr(fn, "__wrapped__", fn))
    return first + next(k for k, line in enumerate(lines) if text in line)


# ---- correctness against numpy ---------------------------------------------------------------------------------------
def test_mlp_with_parameter_dict():
    @ember.jit
    def mlp(params, x):
        h = jnp.maximum(x @ params["w1"] + params["b1"], 0.0)
        h = jnp.tanh(h @ params["w2"] + params["b2"])
        return jnp.softmax(h, axis=-1), h.argmax(axis=1)

    params = {"w1": rand(8, 16), "b1": rand(16), "w2": rand(16, 4), "b2": rand(4)}
    x = rand(5, 8)
    probs, best = mlp(params, x)
    h = np.tanh(np.maximum(x @ params["w1"] + params["b1"], 0) @ params["w2"] + params["b2"])
    e = np.exp(h - h.max(-1, keepdims=True))
    close(probs, e / e.sum(-1, keepdims=True))
    np.testing.assert_array_equal(best, h.argmax(1))
    assert best.dtype == np.int64


def test_softmax_and_layer_norm_like():
    @ember.jit
    def norm(x, gamma, beta, eps=1e-5):
        mu = x.mean(axis=-1, keepdims=True)
        var = ((x - mu) ** 2).mean(axis=-1, keepdims=True)
        y = (x - mu) / jnp.sqrt(var + eps) * gamma + beta
        return {"y": y, "logp": jnp.log_softmax(y), "p": np.exp(y) / np.sum(np.exp(y), axis=-1, keepdims=True)}

    x, gamma, beta = rand(3, 7), rand(7), rand(7)
    out = norm(x, gamma, beta)
    mu = x.mean(-1, keepdims=True)
    ref = (x - mu) / np.sqrt(x.var(-1, keepdims=True) + 1e-5) * gamma + beta
    close(out["y"], ref, rtol=1e-4, atol=1e-5)
    p = np.exp(ref) / np.exp(ref).sum(-1, keepdims=True)
    close(out["p"], p, rtol=1e-4, atol=1e-6)
    close(out["logp"], np.log(p), rtol=1e-4, atol=1e-5)


def test_indexing_and_slicing():
    @ember.jit
    def pick(x, idx):
        return (x[1], x[:, ::2], x[::-1, 1:-1], x[..., None], x[None, 1:3, -1], x[-1, ..., 2:],
                x[:, [0, 2]], x[idx], x[:, :, 1], x[0, idx], x[:, ::-2, 3])

    x = rand(4, 5, 6)
    idx = np.array([[3, 0], [1, 1]], dtype=np.int64)
    got = pick(x, idx)
    want = (x[1], x[:, ::2], x[::-1, 1:-1], x[..., None], x[None, 1:3, -1], x[-1, ..., 2:], x[:, [0, 2]], x[idx],
            x[:, :, 1], x[0, idx], x[:, ::-2, 3])
    assert len(got) == len(want)
    for k, (g, w) in enumerate(zip(got, want, strict=True)):
        assert g.shape == w.shape, k
        np.testing.assert_array_equal(g, w, err_msg=f"result {k}")


def test_broadcasting_constants_and_promotion():
    a_const = np.arange(4, dtype=np.float32)

    @ember.jit
    def f(x, y, n):
        z = x + y                     # (3, 1) + (1, 4)
        w = 2 * z - a_const / 2       # Python scalars stay float32, numpy arrays broadcast
        mask = (z > 0) & (w != 1.0)
        return w, mask, jnp.where(mask, z, -z), n / 2, (n * 3).sum(), -x, abs(y), 1.5 ** x, (n - 3) // -2, n % -4

    x, y, n = rand(3, 1), rand(1, 4), np.arange(6, dtype=np.int32).reshape(2, 3)
    w, mask, sel, half, total, neg, ab, powed, floored, rem = f(x, y, n)
    np.testing.assert_array_equal(floored, (n - 3) // -2)
    np.testing.assert_array_equal(rem, n % -4)
    z = x + y
    close(w, 2 * z - a_const / 2, rtol=1e-6)
    assert w.dtype == np.float32 and mask.dtype == np.bool_
    np.testing.assert_array_equal(mask, (z > 0) & (2 * z - a_const / 2 != 1.0))
    close(sel, np.abs(z), rtol=1e-6)
    assert half.dtype == np.float64 and total.dtype == np.int64  # numpy's rules, not ONNX Div's
    close(half, n / 2)
    assert total == (n * 3).sum()
    np.testing.assert_array_equal(neg, -x)
    np.testing.assert_array_equal(ab, np.abs(y))
    close(powed, np.float32(1.5) ** x)


def test_shapes_reductions_and_concatenate():
    @ember.jit
    def f(x, y):
        r = x.reshape(2, -1).T
        s = jnp.concatenate([x, y * 2], axis=1)
        return (r, s, jnp.stack([x, x], axis=-1), x.transpose(1, 0), x.sum(), x.sum(axis=0), x.max(axis=1),
                x.min(axis=(0, 1), keepdims=True), x.astype(np.int32), jnp.expand_dims(x, 0).shape, x.ndim)

    x, y = rand(3, 4), rand(3, 2)
    r, s, st, t, total, cols, rows, least, ints, shape, ndim = f(x, y)
    np.testing.assert_array_equal(r, x.reshape(2, -1).T)
    close(s, np.concatenate([x, y * 2], axis=1))
    np.testing.assert_array_equal(st, np.stack([x, x], axis=-1))
    np.testing.assert_array_equal(t, x.T)
    close(total, x.sum())
    close(cols, x.sum(0))
    np.testing.assert_array_equal(rows, x.max(1))
    np.testing.assert_array_equal(least, x.min(axis=(0, 1), keepdims=True))
    np.testing.assert_array_equal(ints, x.astype(np.int32))
    assert shape == (1, 3, 4) and ndim == 2  # static facts come back as Python values


# ---- caching and symbolic sizes -------------------------------------------------------------------------------------
def test_signature_cache():
    @ember.jit
    def f(x, scale):
        return x * scale

    x = rand(2, 3)
    f(x, 2.0)
    f(x + 1, 2.0)
    assert (f.stats.traces, f.stats.compiles, f.stats.hits) == (1, 1, 1)
    f(rand(4, 3), 2.0)            # a new shape retraces
    f(x.astype(np.float64), 2.0)  # so does a new dtype
    close(f(x, 3.0), x * 3)  # and a new static argument
    assert (f.stats.compiles, f.stats.cached) == (4, 4)
    assert f.stats.traces == f.stats.compiles


def test_symbolic_dims_serve_every_size():
    @ember.jit(symbolic={"x": {0: "batch"}})
    def f(x, w):
        assert str(x.shape[0]) == "batch"
        return x * w + 1, x[:, 1:].sum(axis=1)

    w = rand(6)
    for n in (1, 3, 17):
        x = rand(n, 6)
        y, tail = f(x, w)
        close(y, x * w + 1)
        close(tail, x[:, 1:].sum(1))
    assert f.stats.compiles == 1 and f.stats.hits == 2


def test_reshape_keeps_a_symbolic_dim():
    f = ember.jit(lambda x: x.reshape(x.shape[0], 2, -1), symbolic={"x": [0]})
    x = rand(3, 4)
    np.testing.assert_array_equal(f(x), x.reshape(3, 2, 2))


def test_nested_jit_is_inlined_and_trace_dump():
    @ember.jit
    def inner(x):
        return jnp.sigmoid(x) * x

    @ember.jit
    def outer(x):
        return inner(x) + 1

    x = rand(5)
    close(outer(x), x / (1 + np.exp(-x)) + 1)
    assert inner.stats.traces == 0
    text = str(outer.trace(x))
    assert "Sigmoid(%x)" in text and f"at {HERE}:{line_of(inner, 'sigmoid')}" in text


# ---- errors point at the user's line --------------------------------------------------------------------------------
def control_flow(x):
    if x.sum() > 0:
        return x
    return -x


def python_float(x):
    return x * float(x[0])


def to_numpy(x):
    return np.asarray(x) + 1


def iterate(x):
    return [row * 2 for row in x]


@pytest.mark.parametrize("fn, text, what", [(control_flow, "if x.sum()", "truth value"),
                                            (python_float, "float(x[0])", "float()"),
                                            (to_numpy, "np.asarray", "numpy array"),
                                            (iterate, "for row in x", "iteration")])
def test_data_dependent_python_is_refused(fn, text, what):
    with pytest.raises(ember.TracingError) as info:
        ember.jit(fn)(rand(3))
    message = str(info.value)
    assert what in message and f"{HERE}:{line_of(fn, text)}" in message and text in message


def test_len_of_symbolic_dim_is_refused():
    @ember.jit(symbolic={"x": [0]})
    def f(x):
        return x * len(x)

    with pytest.raises(ember.TracingError, match=f"symbolic size x_0 at .*{HERE}:{line_of(f, 'len(x)')}"):
        f(rand(3))


def test_shape_errors_name_the_line():
    @ember.jit
    def bad_matmul(a, b):
        c = a + 1
        return c @ b

    @ember.jit
    def bad_broadcast(a, b):
        return a * b

    with pytest.raises(OpError, match=f"matmul at {HERE}:{line_of(bad_matmul, 'c @ b')}"):
        bad_matmul(rand(2, 3), rand(4, 5))
    with pytest.raises(OpError, match=f"mul at {HERE}:{line_of(bad_broadcast, 'a * b')}.*broadcast"):
        bad_broadcast(rand(2, 3), rand(4))
    assert bad_matmul.stats.compiles == 0


def test_unsupported_indexing_and_arguments():
    @ember.jit
    def masked(x):
        return x[x > 0]

    with pytest.raises(ember.TracingError, match=f"boolean .*{HERE}:{line_of(masked, 'x[x > 0]')}"):
        masked(rand(4))
    with pytest.raises(ember.TracingError, match="out of bounds"):
        ember.jit(lambda x: x[3])(rand(3))
    with pytest.raises(TypeError, match="neither an array nor hashable"):
        ember.jit(lambda x, opts: x)(rand(2), {1, 2})
    with pytest.raises(TypeError, match="no parameter 'y'"):
        ember.jit(symbolic={"y": [0]})(lambda x: x)
