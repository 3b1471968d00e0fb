"""Epilogues: the element-wise reader of a tiled stage (bias, activation, residual add, and a convolution's view of
its (pixel) matrix as (oh, ow)) takes the place of the stage's write-back, so the result crosses memory once
instead of being stored, read again, and stored again by a separate pass.

A stage qualifies when one root element-wise stage reads it, directly or through inlined element-wise stages,
at its own output position: the same index, or the last two axes flattened row-major into the stage's last axis.
"""
from __future__ import annotations

from dataclasses import dataclass

from ..ir.expr import Const, Expr, substitute
from ..ir.simplify import affine, simplify_index
from .schedule import Axis, Stage


@dataclass
class Epilogue:
    host: Stage
    flattened: bool  # the host's last two axes make up the stage's last axis

    def axes(self, st: Stage) -> dict[str, Axis]:
        """The host's loops (the last two fused when flattened) under the names of `st`'s spatial axes."""
        leaf = list(self.host.leaf)
        if self.flattened:
            leaf = leaf[:-2] + [self.host.fuse(leaf[-2], leaf[-1])]
        return {iv.var.name: ax for iv, ax in zip(st.op.axis, leaf)}


def find_epilogue(st: Stage) -> "Epilogue | None":
    sch = st.schedule
    if st.is_output or len(st.op.outputs) != 1:
        return None
    host = plain_reader(st)
    if host is None:
        return None
    flattened = _flattened(st, host)
    if flattened is None:
        return None
    want = _position(host, flattened)
    reads = sch.reads_of(st.op.outputs[0], host.op.body[0], host)
    # an axis of one element is index 0 however it is written (a broadcast over a batch of one reads it as 0)
    ones = {iv.var: Const(0, iv.var.dtype) for iv in host.op.axis if getattr(iv.extent, "value", None) == 1}
    if not reads or any(not _same([substitute(e, ones) for e in got], [substitute(e, ones) for e in want])
                        for got in reads):
        return None
    return Epilogue(host, flattened)


def plain_reader(st: Stage) -> "Stage | None":
    """The only stage reading `st` (directly or through inlined element-wise stages) when it is a root,
    single-output element-wise stage no rule has scheduled yet."""
    readers = st.schedule.consumers(st, through_inlined=True)
    if len(readers) != 1:
        return None
    host = readers[0]
    if host.attach.kind != "root" or host.relations or host.op.reduce_axis or len(host.op.outputs) != 1:
        return None
    return None if any(a.loop != "serial" for a in host.leaf) else host


def _extents(st: Stage) -> "list[int] | None":
    ext = [getattr(iv.extent, "value", None) for iv in st.op.axis]
    return None if None in ext else ext


def _flattened(st: Stage, host: Stage) -> "bool | None":
    """False for the same shape, True for a host whose last two axes flatten into the stage's last, else None."""
    mine, theirs = _extents(st), _extents(host)
    if mine is None or theirs is None:
        return None
    if mine == theirs:
        return False
    if len(theirs) == len(mine) + 1 and theirs[:-2] == mine[:-1] and theirs[-2] * theirs[-1] == mine[-1]:
        return True
    return None


def _position(host: Stage, flattened: bool) -> list[Expr]:
    v = [iv.var for iv in host.op.axis]
    if flattened:
        width = host.op.axis[-1].extent
        return [*v[:-2], v[-2] * width + v[-1]]
    return list(v)


def _same(got: list[Expr], want: list[Expr]) -> bool:
    if len(got) != len(want):
        return False
    for a, b in zip(got, want):
        form = affine(simplify_index(a - b))
        if form is None or form[0] or form[1] != 0:
            return False
    return True
