"""Every user-facing error: it must be the documented exception type and say what is wrong and where.

Call-time errors name the offending argument; IR and schedule errors name the tensor, stage or axis.
"""
from __future__ import annotations

import functools
import json

import ember
import numpy as np
import pytest
from ember import IRError, ScheduleError, TargetError


@functools.cache
def _add_kernel():
    """out[n, 4] = a[n, 4] + b[4], float32, with a symbolic n."""
    n = ember.var("n")
    A = ember.placeholder((n, 4), "float32", "a_in")
    B = ember.placeholder((4,), "float32", "b_in")
    C = ember.compute((n, 4), lambda i, j: A[i, j] + B[j], name="c_out")
    return ember.build(C, name="adder")


@functools.cache
def _two_sized_kernel():
    n = ember.var("n")
    A = ember.placeholder((n,), "float32", "x")
    B = ember.placeholder((n,), "float32", "y")
    C = ember.compute((n,), lambda i: A[i] * B[i], name="z")
    return ember.build(C, name="mul2")


def _a(*shape, dtype="float32"):
    return np.zeros(shape, dtype)


# ---- call-time errors -------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("count", [0, 1, 4])
def test_wrong_number_of_arguments(count):
    f = _add_kernel()
    args = [_a(2, 4), _a(4), _a(2, 4), _a(2, 4)][:count]
    with pytest.raises(TypeError, match=r"adder.*takes 2 inputs \(a_in, b_in\) or 3 arrays.*got " + str(count)):
        f(*args)


def test_wrong_dtype_names_argument():
    with pytest.raises(TypeError, match=r"argument 'b_in' has dtype float64, expected float32"):
        _add_kernel()(_a(2, 4), _a(4, dtype="float64"))


def test_wrong_output_dtype_names_output():
    with pytest.raises(TypeError, match=r"argument 'c_out' has dtype int32"):
        _add_kernel()(_a(2, 4), _a(4), _a(2, 4, dtype="int32"))


def test_wrong_ndim_names_argument():
    with pytest.raises(ValueError, match=r"argument 'a_in' has 1 dimensions.*expected 2"):
        _add_kernel()(_a(8), _a(4))


def test_wrong_shape_names_argument():
    with pytest.raises(ValueError, match=r"argument 'b_in' has shape \(5,\), expected \(4,\)"):
        _add_kernel()(_a(2, 4), _a(5))


def test_wrong_output_shape_names_output():
    with pytest.raises(ValueError, match=r"argument 'c_out' has shape \(2, 5\), expected \(2, 4\) "
                                         r"\(from \[n, 4\] with n=2\)"):
        _add_kernel()(_a(2, 4), _a(4), _a(2, 5))
    with pytest.raises(ValueError, match=r"size 'n' is 2 from an earlier argument but 3 in 'c_out'"):
        _add_kernel()(_a(2, 4), _a(4), _a(3, 4))


def test_inconsistent_symbolic_sizes_name_size_and_argument():
    with pytest.raises(ValueError, match=r"size 'n' is 3 from an earlier argument but 5 in 'y'"):
        _two_sized_kernel()(_a(3), _a(5))


def test_non_contiguous_output_is_rejected():
    out = np.zeros((2, 8), np.float32)[:, ::2]
    with pytest.raises(ValueError, match=r"output 'c_out' must be a writeable C-contiguous array"):
        _add_kernel()(_a(2, 4), _a(4), out)


def test_read_only_output_is_rejected():
    out = _a(2, 4)
    out.flags.writeable = False
    with pytest.raises(ValueError, match=r"output 'c_out' must be a writeable C-contiguous array"):
        _add_kernel()(_a(2, 4), _a(4), out)


def test_output_that_is_not_an_array_is_rejected():
    with pytest.raises(TypeError, match=r"output 'c_out' must be a numpy array, got list"):
        _add_kernel()(_a(2, 4), _a(4), [[0.0] * 4] * 2)


def test_outputs_sharing_memory_are_rejected():
    A = ember.placeholder((4,), "float32", "A")
    P, Q = ember.compute((4,), lambda i: (A[i] + 1, A[i] - 1), name="pq")
    f = ember.build([P, Q], name="pq")
    out = _a(4)
    with pytest.raises(ValueError, match=r"two output arrays share memory"):
        f(_a(4), out, out)


def test_unbindable_size_is_reported():
    n = ember.var("n")
    A = ember.placeholder((n + 1,), "float32", "A")
    C = ember.compute((n + 1,), lambda i: A[i] * 2, name="C")
    f = ember.build(C, name="unbindable")
    with pytest.raises(ValueError, match=r"size 'n' is not the whole extent of any argument"):
        f(_a(5))


def test_unsupported_input_dtype_names_argument():
    with pytest.raises(TypeError, match=r"argument 'a_in' has dtype complex64"):
        _add_kernel()(np.zeros((2, 4), np.complex64), _a(4))


# ---- tensor IR errors -------------------------------------------------------------------------------------------------

def test_wrong_index_count():
    A = ember.placeholder((3, 4), "float32", "mat")
    with pytest.raises(IRError, match=r"tensor 'mat' has 2 dimensions but was indexed with 1"):
        ember.compute((3,), lambda i: A[i], name="C")
    with pytest.raises(IRError, match=r"tensor 'mat' has 2 dimensions but was indexed with 3"):
        ember.compute((3,), lambda i: A[i, i, i], name="C")


def test_float_index_is_rejected():
    A = ember.placeholder((3,), "float32", "vec")
    with pytest.raises(IRError, match=r"tensor 'vec' indexed with non-integer expression"):
        ember.compute((3,), lambda i: A[A[i]], name="C")


def test_reduction_nested_in_expression():
    A = ember.placeholder((3, 4), "float32", "A")
    k = ember.reduce_axis(4, "k")
    with pytest.raises(IRError, match=r"compute 'nested': a reduction must be the whole body"):
        ember.compute((3,), lambda i: ember.sum(A[i, k], k) * 2, name="nested")


def test_multi_output_mixing_reduction_and_elementwise():
    A = ember.placeholder((3, 4), "float32", "A")
    k = ember.reduce_axis(4, "k")
    with pytest.raises(IRError, match=r"compute 'mixed': a multi-output compute must be all reductions or none"):
        ember.compute((3,), lambda i: (ember.sum(A[i, k], k), A[i, 0]), name="mixed")


def test_multi_output_reductions_must_share_one_tuple_reduction():
    A = ember.placeholder((3, 4), "float32", "A")
    k = ember.reduce_axis(4, "k")
    with pytest.raises(IRError, match=r"compute 'two': the outputs of a multi-output reduction"):
        ember.compute((3,), lambda i: (ember.sum(A[i, k], k), ember.sum(A[i, k] * 2, k)), name="two")


def test_bool_if_on_expression():
    A = ember.placeholder((3,), "float32", "A")

    def body(i):
        if A[i] > 0:
            return A[i]
        return -A[i]
    with pytest.raises(TypeError, match=r"has no Python truth value: use ember.select/where"):
        ember.compute((3,), body, name="C")


def test_python_and_on_expressions():
    A = ember.placeholder((3,), "float32", "A")
    with pytest.raises(TypeError, match=r"`&`/`\|` instead of `and`/`or`"):
        ember.compute((3,), lambda i: ember.where((A[i] > 0) and (A[i] < 1), 1.0, 0.0), name="C")


def test_reduce_axis_must_come_from_reduce_axis():
    A = ember.placeholder((3, 4), "float32", "A")
    with pytest.raises(IRError, match=r"reduction axis must come from ember.reduce_axis"):
        ember.compute((3,), lambda i: ember.sum(A[i, 0], i), name="C")


def test_reduction_where_must_be_bool():
    A = ember.placeholder((3, 4), "float32", "A")
    k = ember.reduce_axis(4, "k")
    with pytest.raises(IRError, match=r"reduction `where` must be a bool expression, got float32"):
        ember.compute((3,), lambda i: ember.sum(A[i, k], k, where=A[i, k]), name="C")


def test_argmax_over_two_axes():
    A = ember.placeholder((3, 4), "float32", "A")
    k1, k2 = ember.reduce_axis(3, "k1"), ember.reduce_axis(4, "k2")
    with pytest.raises(IRError, match=r"argmax reduces over exactly one axis"):
        ember.argmax(A[k1, k2], [k1, k2])


def test_operator_type_errors():
    F = ember.placeholder((3,), "float32", "F")
    B = ember.placeholder((3,), "bool", "B")
    with pytest.raises(TypeError, match=r"shift needs integer operands, got float32"):
        ember.compute((3,), lambda i: F[i] << 1, name="C")
    with pytest.raises(TypeError, match=r"`&` needs integer or bool operands, got float32"):
        ember.compute((3,), lambda i: F[i] & F[i], name="C")
    with pytest.raises(TypeError, match=r"cannot negate a bool expression"):
        ember.compute((3,), lambda i: -B[i], name="C")
    with pytest.raises(TypeError, match=r"cannot use str 'x' in an ember expression"):
        ember.compute((3,), lambda i: F[i] + "x", name="C")


def test_unsupported_dtype():
    with pytest.raises(TypeError, match=r"unsupported dtype 'complex64'; ember supports"):
        ember.placeholder((3,), "complex64", "A")


# ---- schedule errors --------------------------------------------------------------------------------------------------

def _matmul():
    A = ember.placeholder((16, 8), "float32", "A")
    B = ember.placeholder((8, 12), "float32", "B")
    k = ember.reduce_axis(8, "k")
    C = ember.compute((16, 12), lambda i, j: ember.sum(A[i, k] * B[k, j], k), name="C")
    return A, B, C, k


def _chain():
    """A -> T (element-wise intermediate) -> U (element-wise intermediate) -> O (output)."""
    n = ember.var("n")
    A = ember.placeholder((n, 16), "float32", "A")
    T = ember.compute((n, 16), lambda i, j: A[i, j] * 2, name="T")
    U = ember.compute((n, 16), lambda i, j: T[i, j] + 1, name="U")
    O = ember.compute((n, 16), lambda i, j: U[i, j] - T[i, j], name="O")
    return A, T, U, O


def test_axis_lookup_errors():
    _A, _B, C, _k = _matmul()
    s = ember.create_schedule(C)
    st = s[C]
    with pytest.raises(ScheduleError, match=r"stage 'C' has no axis named 'zz'; its loops are: i, j, k"):
        st.split("zz", 4)
    with pytest.raises(ScheduleError, match=r"stage 'C' has 3 loops; no loop number 3"):
        st.split(3, 4)
    other = ember.reduce_axis(8, "other")
    with pytest.raises(ScheduleError, match=r"iteration variable 'other' is not an axis of stage 'C'"):
        st.split(other, 4)
    with pytest.raises(ScheduleError, match=r"expected an axis, got float 1.5"):
        st.split(1.5, 4)
    _A2, _B2, C2, _ = _matmul()
    foreign = ember.create_schedule(C2)[C2].axes[0]
    with pytest.raises(ScheduleError, match=r"axis 'i' does not belong to stage 'C'"):
        st.split(foreign, 4)


def test_axis_by_itervar_and_negative_index_work():
    _A, _B, C, k = _matmul()
    st = ember.create_schedule(C)[C]
    assert st.axis(k).name == "k"
    assert st.axis(-1).name == "k"
    assert st.axis(C.op.axis[1]).name == "j"


def test_split_errors():
    _A, _B, C, _k = _matmul()
    st = ember.create_schedule(C)[C]
    with pytest.raises(ScheduleError, match=r"split of 'i': give exactly one of factor= or nparts="):
        st.split("i")
    with pytest.raises(ScheduleError, match=r"split of 'i': give exactly one of factor= or nparts="):
        st.split("i", 2, nparts=2)
    for bad in (0, -3, 2.5, True):
        with pytest.raises(ScheduleError, match=r"split of 'i': the factor must be a positive integer"):
            st.split("i", bad)
    with pytest.raises(ScheduleError, match=r"split of 'i': unknown tail strategy 'wrap'"):
        st.split("i", 4, tail="wrap")
    st.split("i", 4)
    with pytest.raises(ScheduleError, match=r"split: axis 'i' of stage 'C' was already split or fused; use one of "
                                            r"its current loops: i.outer, i.inner, j, k"):
        st.split("i", 2)


def test_reorder_and_fuse_errors():
    _A, _B, C, _k = _matmul()
    st = ember.create_schedule(C)[C]
    with pytest.raises(ScheduleError, match=r"reorder on stage 'C': an axis is listed twice"):
        st.reorder("i", "i")
    with pytest.raises(ScheduleError, match=r"fuse needs at least one axis"):
        st.fuse()
    with pytest.raises(ScheduleError, match=r"fuse on stage 'C': axes \['i', 'k'\] must be adjacent"):
        st.fuse("i", "k")
    with pytest.raises(ScheduleError, match=r"fuse on stage 'C': axes \['j', 'i'\] must be adjacent and in loop"):
        st.fuse("j", "i")
    with pytest.raises(ScheduleError, match=r"fuse on stage 'C': cannot fuse spatial and reduction axes"):
        st.fuse("j", "k")
    fused = st.fuse("i", "j")
    with pytest.raises(ScheduleError, match=r"reorder: axis 'i' of stage 'C' was already split or fused"):
        st.reorder("i", fused)


def test_annotation_errors():
    _A, _B, C, _k = _matmul()
    st = ember.create_schedule(C)[C]
    with pytest.raises(ScheduleError, match=r"vectorize on C.k: it is a reduction axis"):
        st.vectorize("k")
    with pytest.raises(ScheduleError, match=r"parallel on C.k: it is a reduction axis"):
        st.parallel("k")
    st.parallel("i")
    with pytest.raises(ScheduleError, match=r"parallel on C.i: the loop is already marked parallel"):
        st.parallel("i")
    with pytest.raises(ScheduleError, match=r"vectorize on C.i: the loop is already marked parallel"):
        st.vectorize("i")
    with pytest.raises(ScheduleError, match=r"bind on C.j: unknown tag 'warp.x'; use one of blockIdx.x"):
        st.bind("j", "warp.x")
    st.bind("j", "threadIdx.x")
    st.split("k", 2)
    with pytest.raises(ScheduleError, match=r"bind on C.k.outer: threadIdx.x is already bound in this stage"):
        st.bind("k.outer", "threadIdx.x")


def test_vectorize_and_unroll_extent_limits():
    n = ember.var("n")
    A = ember.placeholder((n, 1024), "float32", "A")
    C = ember.compute((n, 1024), lambda i, j: A[i, j] + 1, name="C")
    st = ember.create_schedule(C)[C]
    with pytest.raises(ScheduleError, match=r"vectorize on C.i: needs a constant extent between 1 and 64, got n"):
        st.vectorize("i")
    with pytest.raises(ScheduleError, match=r"vectorize on C.j: needs a constant extent between 1 and 64, got 1024"):
        st.vectorize("j")
    with pytest.raises(ScheduleError, match=r"unroll on C.i: needs a constant extent of at most 512, got n"):
        st.unroll("i")
    with pytest.raises(ScheduleError, match=r"unroll on C.j: needs a constant extent of at most 512, got 1024"):
        st.unroll("j")
    _, ji = st.split("j", 64)
    st.vectorize(ji)
    with pytest.raises(ScheduleError, match=r"unroll on C.j.inner: the loop is already marked vectorized"):
        st.unroll(ji)


def test_inlined_stage_has_no_loops():
    _A, T, _U, O = _chain()
    s = ember.create_schedule(O)
    s[T].compute_inline()
    for what, call in [("split", lambda st: st.split("i", 2)), ("reorder", lambda st: st.reorder("j", "i")),
                       ("fuse", lambda st: st.fuse("i", "j")), ("vectorize", lambda st: st.vectorize("j")),
                       ("unroll", lambda st: st.unroll("j")), ("parallel", lambda st: st.parallel("i")),
                       ("bind", lambda st: st.bind("i", "blockIdx.x"))]:
        with pytest.raises(ScheduleError, match=rf"{what}: stage 'T' is inlined and has no loops of its own"):
            call(s[T])


def test_compute_at_errors():
    _A, T, U, O = _chain()
    s = ember.create_schedule(O)
    with pytest.raises(ScheduleError, match=r"compute_at of 'O': it is a kernel output"):
        s[O].compute_at(s[U], "i")
    with pytest.raises(ScheduleError, match=r"compute_at of 'T' at U\.i: its consumer 'O' is outside that loop"):
        s[T].compute_at(s[U], "i")
    with pytest.raises(ScheduleError, match=r"compute_at of 'U' at T\.i: its consumer 'O' is outside that loop"):
        s[U].compute_at(s[T], "i")
    with pytest.raises(ScheduleError, match=r"compute_at of U: axis 'q' of stage 'O'|stage 'O' has no axis named "
                                            r"'q'"):
        s[U].compute_at(s[O], "q")
    s[O].split("j", 4)
    with pytest.raises(ScheduleError, match=r"compute_at of U: axis 'j' of stage 'O' was already split or fused"):
        s[U].compute_at(s[O], "j")


def test_compute_at_inlined_target():
    A = ember.placeholder((8,), "float32", "A")
    T = ember.compute((8,), lambda i: A[i] * 2, name="T")
    U = ember.compute((8,), lambda i: T[i] + 1, name="U")
    O = ember.compute((8,), lambda i: U[i] - 1, name="O")
    s = ember.create_schedule(O)
    s[U].compute_inline()
    with pytest.raises(ScheduleError, match=r"compute_at of 'T': target stage 'U' is inlined"):
        s[T].compute_at(s[U], "i")


def test_compute_inline_errors():
    A, _B, C, _k = _matmul()
    D = ember.compute((16, 12), lambda i, j: C[i, j] * 2, name="D")
    s = ember.create_schedule(D)
    with pytest.raises(ScheduleError, match=r"compute_inline of 'C': it is a reduction and cannot be inlined"):
        s[C].compute_inline()
    with pytest.raises(ScheduleError, match=r"compute_inline of 'D': it is a kernel output and must be stored"):
        s[D].compute_inline()
    A, T, U, O = _chain()
    s = ember.create_schedule(O)
    s[T].split("i", 2)
    with pytest.raises(ScheduleError, match=r"compute_inline of 'T': its loops were already transformed"):
        s[T].compute_inline()
    s = ember.create_schedule(O)
    s[U].parallel("i")
    with pytest.raises(ScheduleError, match=r"compute_inline of 'U': its loops were already transformed"):
        s[U].compute_inline()
    A = ember.placeholder((8,), "float32", "A")
    T = ember.compute((8,), lambda i: A[i] * 2, name="T")
    U = ember.compute((8,), lambda i: T[i] + 1, name="U")
    O = ember.compute((8,), lambda i: U[i] - 1, name="O")
    s = ember.create_schedule(O)
    s[T].compute_at(s[U], "i")
    with pytest.raises(ScheduleError, match=r"compute_inline of 'U': other stages are computed at its loops"):
        s[U].compute_inline()


def test_scope_errors():
    A, T, _U, O = _chain()
    s = ember.create_schedule(O)
    with pytest.raises(ScheduleError, match=r"set_scope on 'T': unknown scope 'l2'; use one of"):
        s[T].set_scope("l2")
    with pytest.raises(ScheduleError, match=r"cache_read: unknown scope 'l2'"):
        s.cache_read(A, "l2", [T])
    with pytest.raises(ScheduleError, match=r"cache_write: unknown scope 'l2'"):
        s.cache_write(O, "l2")


def test_cache_read_errors():
    A, _T, U, O = _chain()
    s = ember.create_schedule(O)
    with pytest.raises(ScheduleError, match=r"cache_read of 'A': give at least one reader stage"):
        s.cache_read(A, "local", [])
    with pytest.raises(ScheduleError, match=r"cache_read of 'A': stage 'U' does not read it"):
        s.cache_read(A, "local", [U])


def test_cache_write_errors():
    _A, _T, _U, O = _chain()
    s = ember.create_schedule(O)
    s[O].split("i", 2)
    with pytest.raises(ScheduleError, match=r"cache_write of 'O': apply it before any other primitive"):
        s.cache_write(O, "local")
    B = ember.placeholder((4,), "float32", "B")
    P, Q = ember.compute((4,), lambda i: (B[i] + 1, B[i] - 1), name="pq")
    s = ember.create_schedule([P, Q])
    with pytest.raises(ScheduleError, match=r"cache_write of 'pq': multi-output stages are not supported"):
        s.cache_write(P, "local")


def test_schedule_lookup_errors():
    A, _T, U, O = _chain()
    with pytest.raises(ScheduleError, match=r"a schedule needs one or more output tensors"):
        ember.create_schedule([])
    with pytest.raises(ScheduleError, match=r"a schedule needs one or more output tensors"):
        ember.create_schedule(["O"])
    s = ember.create_schedule(U)
    with pytest.raises(ScheduleError, match=r"no stage named 'nope'; stages: T, U"):
        s["nope"]
    with pytest.raises(ScheduleError, match=r"'A' is an input placeholder; it has no stage to schedule"):
        s[A]
    with pytest.raises(ScheduleError, match=r"tensor 'O' is not part of this schedule"):
        s[O]
    with pytest.raises(ScheduleError, match=r"expected a tensor, stage or stage name, got int"):
        s[0]


def test_build_of_bare_placeholder():
    A = ember.placeholder((4,), "float32", "A")
    with pytest.raises(ScheduleError, match=r"an output of the schedule is an input placeholder"):
        ember.build(A)


# ---- build-time (lowering) errors -------------------------------------------------------------------------------------

def test_missing_input_in_args():
    _A, _T, _U, O = _chain()
    s = ember.create_schedule(O)
    with pytest.raises(ScheduleError, match=r"stage 'T' reads input 'A', which is missing from the build arguments"):
        ember.build(s, [O])


def test_args_without_computed_tensor():
    A, _T, _U, O = _chain()
    s = ember.create_schedule(O)
    with pytest.raises(ScheduleError, match=r"build arguments contain no computed tensor"):
        ember.build(s, [A])
    with pytest.raises(ScheduleError, match=r"build needs at least one argument tensor"):
        ember.build(s, [])


def test_duplicate_argument_names():
    """Checked even when a kernel of the same structure (names aside) is already compiled and cached."""
    B = ember.placeholder((4,), "float32", "Y")
    ember.build(ember.compute((4,), lambda i: B[i] + 1, name="Z"))
    A = ember.placeholder((4,), "float32", "X")
    C = ember.compute((4,), lambda i: A[i] + 1, name="X")
    with pytest.raises(ScheduleError, match=r"two arguments are named 'X'; give tensors distinct names"):
        ember.build(C)


def test_build_args_must_be_tensors():
    A, _T, _U, O = _chain()
    s = ember.create_schedule(O)
    with pytest.raises(TypeError, match=r"build args must be tensors, got str"):
        ember.build(s, [A, "O"])


def test_bind_on_llvm_target():
    A, _T, _U, O = _chain()
    s = ember.create_schedule(O)
    s[O].bind("i", "blockIdx.x")
    with pytest.raises(ScheduleError, match=r"O.i is bound to blockIdx.x, which needs a GPU target"):
        ember.build(s, [A, O])


def test_pad_on_output():
    A, _T, _U, O = _chain()
    s = ember.create_schedule(O)
    s[O].split("j", 5, tail="pad")
    with pytest.raises(ScheduleError, match=r"split with tail='pad' on 'O': it is a kernel output"):
        ember.build(s, [A, O])


def test_inlined_stage_passed_as_argument():
    A, T, _U, O = _chain()
    s = ember.create_schedule(O)
    s[T].compute_inline()
    with pytest.raises(ScheduleError, match=r"stage 'T' is a kernel argument, so it cannot be inlined"):
        ember.build(s, [A, T, O])


def test_compute_at_inside_vectorized_loop():
    A = ember.placeholder((8, 16), "float32", "A")
    T = ember.compute((8, 16), lambda i, j: A[i, j] * 2, name="T")
    O = ember.compute((8, 16), lambda i, j: T[i, j] + 1, name="O")
    s = ember.create_schedule(O)
    s[O].vectorize("j")
    s[T].compute_at(s[O], "j")
    with pytest.raises(ScheduleError, match=r"compute_at of 'T' inside the vectorized loop O.j"):
        ember.build(s, [A, O])


def test_compute_at_with_unboundable_region():
    A = ember.placeholder((64,), "float32", "A")
    T = ember.compute((64,), lambda i: A[i] * 2, name="T")
    O = ember.compute((8, 8), lambda i, j: T[(i * j) % 64], name="O")
    s = ember.create_schedule(O)
    s[T].compute_at(s[O], "i")
    with pytest.raises(ScheduleError, match=r"compute_at of 'T' at O: cannot bound the index expression"):
        ember.build(s, [A, O])


# ---- targets and sources ----------------------------------------------------------------------------------------------

@pytest.mark.parametrize("target,message", [
    ("bogus", r"invalid target 'bogus': unknown target kind 'bogus'; valid kinds: llvm"),
    ("", r"empty target string"),
    ("llvm -opt=7", r"-opt=7: must be in 0..3"),
    ("llvm -opt=fast", r"-opt expects an integer, got 'fast'"),
    ("llvm -optt=2", r"unknown option -optt for llvm \(did you mean -opt\?\)"),
    ("llvm --opt=2", r"options take a single dash"),
    ("llvm opt=2", r"expected an option like -name or -name=value, got 'opt=2'"),
    ("llvm -opt=1 -opt=2", r"duplicate option -opt"),
    ("llvm -fastmath=1", r"-fastmath is a flag and takes no value"),
    ("llvm -opt", r"option -opt needs a value"),
])
def test_target_errors(target, message):
    A = ember.placeholder((4,), "float32", "A")
    C = ember.compute((4,), lambda i: A[i] + 1, name="C")
    with pytest.raises(TargetError, match=message):
        ember.build(C, target=target)


def test_target_must_be_string():
    A = ember.placeholder((4,), "float32", "A")
    C = ember.compute((4,), lambda i: A[i] + 1, name="C")
    with pytest.raises(TargetError, match=r"a target must be a string or Target, not int"):
        ember.build(C, target=3)


def test_unknown_source_kind():
    f = _add_kernel()
    with pytest.raises(ValueError, match=r"unknown source kind 'ptx'; valid kinds: tensor, schedule, loops, llvm"):
        f.source("ptx")
    for kind in ("tensor", "schedule", "loops", "llvm", "llvm-opt", "asm"):
        assert f.source(kind).strip(), kind


# ---- trace JSON -------------------------------------------------------------------------------------------------------

def _trace_json(instructions, version=1):
    return json.dumps({"version": version, "instructions": instructions})


@pytest.mark.parametrize("text,message", [
    ("not json", r"malformed schedule trace"),
    ("[1, 2]", r"malformed schedule trace"),
    ('{"version": 1}', r"malformed schedule trace: 'instructions'"),
    (_trace_json([], version=99), r"schedule trace version 99 is not 1"),
    ('{"instructions": []}', r"schedule trace version None is not 1"),
    (_trace_json([{"kind": "split", "stage": "O"}]), r"malformed schedule trace: 'args'"),
    (_trace_json([{"kind": "split", "args": {"axis": "i", "factor": 2}}]), r"malformed schedule trace: 'stage'"),
    (_trace_json(["split"]), r"malformed schedule trace"),
    (_trace_json([{"kind": "split", "stage": "O", "args": [1]}]), r"malformed schedule trace"),
    (_trace_json([{"kind": "split", "stage": "O", "args": {"factor": 2}}]),
     r"malformed trace instruction .*split.*missing 'axis'"),
    (_trace_json([{"kind": "twist", "stage": "O", "args": {}}]), r"unknown schedule primitive 'twist' in trace"),
    (_trace_json([{"kind": "split", "stage": "Q", "args": {"axis": "i", "factor": 2}}]),
     r"no stage named 'Q'; stages: T, U, O"),
    (_trace_json([{"kind": "split", "stage": "O", "args": {"axis": "w", "factor": 2}}]),
     r"stage 'O' has no axis named 'w'"),
    (_trace_json([{"kind": "cache_read", "stage": "", "args": {"tensor": "Z", "scope": "local", "readers": ["T"]}}]),
     r"trace names tensor 'Z', which is not in this workload"),
    (_trace_json([{"kind": "split", "stage": "O", "args": {"axis": "i", "factor": 0}}]),
     r"the factor must be a positive integer, got 0"),
])
def test_malformed_trace(text, message):
    _A, _T, _U, O = _chain()
    with pytest.raises(ScheduleError, match=message):
        ember.from_trace(O, text)
