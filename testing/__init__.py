"""Property-test your own ember operators: hypothesis strategies for shapes, dtypes, inputs and random legal
schedules, plus `check_kernel`, which compares a kernel with a numpy reference and, on failure, prints the
schedule trace and a one-line replay of the failing case.

Example (a symbolic-size operator, so one workload serves every drawn shape)::

    import ember
    import numpy as np
    from hypothesis import given, strategies as st
    from ember import testing as et

    def scaled_rowsum():
        n, m = ember.var("n"), ember.var("m")
        A = ember.placeholder((n, m), "float32", "A")
        k = ember.reduce_axis(m, "k")
        B = ember.compute((n,), lambda i: ember.sum(A[i, k] * 2, axis=k), name="B")
        return B, [A, B]

    @given(shape=et.shapes(ndim=2), schedule=et.schedules(scaled_rowsum), data=st.data())
    def test_scaled_rowsum(shape, schedule, data):
        a = data.draw(et.arrays(shape, "float32"))
        et.check_kernel(scaled_rowsum, lambda a: (a * 2).sum(axis=1), [a], schedule=schedule)

For fixed-size operators build the workload from the drawn shape first, then draw its schedule with
`data.draw(et.schedules(make_workload))`.
"""
from .check import RTOL, assert_close, check_kernel, mismatch, tolerance
from .strategies import PRIMITIVES, arrays, dtypes, schedules, shapes, targets, workload
from .gpu import gpu_test_target, gpu_test_unavailable

__all__ = ["PRIMITIVES", "RTOL", "arrays", "assert_close", "check_kernel", "dtypes", "gpu_test_target",
           "gpu_test_unavailable", "mismatch", "schedules", "shapes", "targets", "tolerance", "workload"]
