"""Index simplification keeps values: flattened-index digit sums recombine (weight reshapes, im2col), for every
sign of the index, and expressions that only look alike are left alone."""
from __future__ import annotations

from hypothesis import given, settings, strategies as st

from ember.ir.dtype import INDEX
from ember.ir.expr import Const, Var, substitute
from ember.ir.simplify import simplify_index


def _value(e, env):
    out = simplify_index(substitute(e, {v: Const(x, INDEX) for v, x in env.items()}))
    assert isinstance(out, Const), out
    return out.value


@settings(max_examples=60, deadline=None)
@given(c=st.integers(1, 9), d=st.integers(1, 9), n=st.integers(-3, 3), a=st.integers(-50, 50),
       b=st.integers(-50, 50), bias=st.integers(-5, 5))
def test_divmod_recombination_keeps_values(c, d, n, a, b, bias):
    i, j = Var("i", INDEX), Var("j", INDEX)
    x = i * 3 + j + bias
    exprs = [x % c * n + x // c * (n * c),  # -> n*x
             x % c * n + x // c % d * (n * c),  # -> n*(x % (c*d))
             x % c + x // c % d * c + x // (c * d) * (c * d),  # -> x, in two steps
             x % c + x // c * (c + 1)]  # not a recombination: unchanged value
    for e in exprs:
        assert _value(simplify_index(e), {i: a, j: b}) == _value(e, {i: a, j: b})


def test_flattened_indices_collapse():
    k, ko = Var("k", INDEX), Var("ko", INDEX)
    x = k + ko * 256
    assert str(simplify_index(x % 3 + x // 3 % 3 * 3 + x // 9 * 9 + 5)) == "k + ko * 256 + 5"
    p = Var("p", INDEX)
    assert str(simplify_index(p % 7 * 2 + p // 7 * 14)) == "p * 2"
    assert str(simplify_index(p % 14 * 2 + p // 14 * 56)) == "p % 14 * 2 + p // 14 * 56"
