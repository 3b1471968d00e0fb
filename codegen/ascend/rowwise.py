"""Fused row-wise kernels (softmax, layer norm): consecutive row nests over the same rows become one kernel.

A group is row reductions followed by an element-wise nest, all over the same outer rows and the same row length
D, where every reduction result is read only by later members of the group, as one scalar per row. Each core
takes whole rows (former/tail cores); per row, CopyIn brings every input row into UB once (padded to 32 bytes),
Compute runs the reductions (their results stay scalars: no GM workspace round trip) and then the element-wise
chain into the VECOUT tile, CopyOut writes the row. A row that does not fit the UB budget keeps separate kernels.
"""
from __future__ import annotations

from ...compiler.target import SocInfo
from ...ir.expr import Expr, expr_key, substitute
from ...ir.loops import Buffer, Load
from ...ir.simplify import affine, simplify_index
from .analyze import Nest, operand_of
from .cexpr import AscendError, CPrinter, ident, storage_type
from .kernel import KernelSource, entry, tiling_struct
from .tiling import BLOCK, MAX_IN_QUEUES, Buffers, TilingChoice, align_up, budget, split_units, ub_bytes
from .vector import _REDUCE, _decode
from .vexpr import Unvectorizable, VectorCompiler, VScalar

MIN_GROUP = 2


class RowTooLong(AscendError):
    """A whole row does not fit in UB: the group runs as separate row kernels instead."""


def find_group(nests: list[Nest], start: int, internal: set[int]) -> int:
    """Index one past the last member of a fusable group starting at `start` (or `start` when none).
    `internal` holds ids of workspace buffers; a member's output may feed the group only if it is one of them."""
    first = nests[start]
    if first.family != "row_reduce":
        return start
    shape = [n for _, n in first.outer]
    end = start
    produced: set[int] = set()
    for t in range(start, len(nests)):
        nest = nests[t]
        if nest.family not in ("row_reduce", "elementwise") or [n for _, n in nest.outer] != shape or \
                nest.row != first.row:
            break
        if any(id(op.buffer) in produced and (op.tile or not _own_row(nest, op.offset)) for op in nest.operands):
            break
        if nest.family == "elementwise":
            end = t + 1
            break
        if id(nest.out) not in internal:
            break
        produced.add(id(nest.out))
    if end - start < MIN_GROUP:
        return start
    later = [n for n in nests[end:]]
    for n in later:  # results consumed outside the group must reach GM: keep those nests separate
        if any(id(op.buffer) in produced for op in n.operands) or _reads_any(n, produced):
            return start
    return end


def _reads_any(nest: Nest, bufs: set[int]) -> bool:
    from .analyze import reads_writes
    reads, _ = reads_writes(nest.stmt)
    return any(id(b) in bufs for b in reads)


def _own_row(nest: Nest, offset: Expr) -> bool:
    """Whether a per-row scalar operand reads element `row` of a buffer laid out over the outer loops."""
    form = affine(simplify_index(offset))
    if form is None or form[1] != 0:
        return False
    stride = 1
    for v, n in reversed(nest.outer):
        if form[0].get(v, 0) != stride:
            return False
        stride *= n
    return len(form[0]) == len(nest.outer)


def render_rowwise(name: str, group: list[Nest], soc: SocInfo, choice: TilingChoice) -> KernelSource:
    base = group[0]
    last = group[-1]
    d = base.row
    rows = 1
    for _, n in base.outer:
        rows *= n
    varmaps = [{v: bv for (v, _), (bv, _) in zip(n.outer, base.outer)} for n in group]
    internal = {id(n.out): f"w{t}" for t, n in enumerate(group[:-1])}
    ops: list[tuple[Buffer, Expr, bool]] = []
    keys: dict[tuple, int] = {}

    def op_id(nest_i: int, ld: Load) -> int:
        return op_key(nest_i, group[nest_i].operands[operand_of(group[nest_i], ld)])

    def op_key(nest_i: int, op) -> int:
        off = simplify_index(substitute(op.offset, varmaps[nest_i]))
        key = (id(op.buffer), expr_key(off), op.tile)
        if key not in keys:
            keys[key] = len(ops)
            ops.append((op.buffer, off, op.tile))
        return keys[key]

    for t, nest in enumerate(group):
        for op in nest.operands:
            if id(op.buffer) not in internal:
                op_key(t, op)
    tiles = [i for i, (_, _, tile) in enumerate(ops) if tile]
    if len(tiles) > MAX_IN_QUEUES:
        raise Unvectorizable(f"{len(tiles)} input rows exceed {MAX_IN_QUEUES} VECIN buffers")
    scalars = [i for i, (_, _, tile) in enumerate(ops) if not tile]
    out_t = storage_type(last.out.dtype, name)
    lines: list[str] = []
    temps, compare, temp_types = 0, False, set()
    for t, nest in enumerate(group):
        def tile_of(ld: Load, t=t):
            if id(ld.buffer) in internal:
                return None
            i = op_id(t, ld)
            return f"in{i}" if ops[i][2] else None

        def scalar_of(ld: Load, t=t):
            return internal[id(ld.buffer)] if id(ld.buffer) in internal else f"s{op_id(t, ld)}"
        comp = VectorCompiler(tile_of, scalar_of)
        if nest.family == "row_reduce":
            code, val = comp.to_any(nest.value)
            if isinstance(val, VScalar):
                raise AscendError(f"kernel {name}: a reduction of a row-constant value")
            tt = storage_type(nest.out.dtype, name)
            lines += code.lines
            lines.append(f"AscendC::{_REDUCE[nest.combiner]}<{tt}>(red_{tt}, {val.name}, work_{tt}, count"
                         + (");" if nest.combiner == "sum" else ", false);"))
            lines.append(f"{internal[id(nest.out)]} = (float)red_{tt}.GetValue(0);")
        else:
            code = comp.to_tile(nest.value, "y")
            lines += code.lines
        temps = max(temps, code.temps)
        compare = compare or code.uses_compare
        temp_types |= code.temp_types
    itemsizes = [ops[i][0].dtype.itemsize for i in tiles]
    min_item = min(itemsizes + [last.out.dtype.itemsize, 4])
    buffers = Buffers(tuple(itemsizes) + (last.out.dtype.itemsize,), temps + 1, compare, BLOCK, min_item)
    align = (256 if compare else BLOCK) // min_item
    tile = align_up(d, align)
    if ub_bytes(buffers, tile) > budget(soc):
        raise RowTooLong(f"kernel {name}: a row of {d} elements needs {ub_bytes(buffers, tile)} bytes of UB, "
                          f"over the {budget(soc)}-byte budget of {soc.name}")
    if not soc.has_data_copy_pad:
        for b in [last.out] + [ops[i][0] for i in tiles]:
            if d % (BLOCK // b.dtype.itemsize):
                raise AscendError(f"kernel {name}: rows of {d} {b.dtype} elements of {b.name} are not 32-byte "
                                  f"aligned; unaligned copies need DataCopyPad, which {soc.name} does not have")
    split = split_units(rows, choice.cores)
    printer = CPrinter(lambda ld: "0")
    bufs: list[Buffer] = [last.out]
    for b, _, _ in ops:
        if all(b is not x for x in bufs):
            bufs.append(b)
    gm = {id(b): f"{ident(b.name)}Gm" for b in bufs}

    def t_of(i: int) -> str:
        return storage_type(ops[i][0].dtype, name)
    red_types = sorted({storage_type(n.out.dtype, name) for n in group[:-1]})
    cls = f"Kernel_{name}"
    init = [f"        {gm[id(b)]}.SetGlobalBuffer((__gm__ {storage_type(b.dtype, b.name)}*){ident(b.name)}, "
            f"t.size_{ident(b.name)});" for b in bufs]
    init += [f"        pipe.InitBuffer(inQueue{i}, BUFFER_NUM, t.tileLen * sizeof({t_of(i)}));" for i in tiles]
    init += [f"        pipe.InitBuffer(outQueue, BUFFER_NUM, t.tileLen * sizeof({out_t}));",
             "        pipe.InitBuffer(workBuf, t.tileLen * sizeof(float));", "        pipe.InitBuffer(redBuf, 32);"]
    init += [f"        pipe.InitBuffer(tmpBuf{k}, t.tileLen * sizeof(float));" for k in range(temps)]
    if compare:
        init.append("        pipe.InitBuffer(maskBuf, (t.tileLen / 8 + 31) / 32 * 32);")
    copy_in = [f"        AscendC::LocalTensor<{t_of(i)}> x{i} = inQueue{i}.AllocTensor<{t_of(i)}>();\n"
               f"        EmberCopyIn(x{i}, {gm[id(ops[i][0])]}[{printer(ops[i][1])}], tiling.rowLen);\n"
               f"        inQueue{i}.EnQue(x{i});" for i in tiles]
    scalars_in = [f"        s{i} = (float){gm[id(ops[i][0])]}.GetValue({printer(ops[i][1])});" for i in scalars]
    head = ["        const int32_t count = (int32_t)tiling.rowLen;"]
    if compare:
        head.append(f"        const int32_t acount = (int32_t)((tiling.rowLen + {align - 1}) / {align} * {align});")
    head += [f"        AscendC::LocalTensor<{t_of(i)}> in{i} = inQueue{i}.DeQue<{t_of(i)}>();" for i in tiles]
    head += [f"        AscendC::LocalTensor<{t}> tmp{s}_{t} = tmpBuf{s}.Get<{t}>();" for s, t in sorted(temp_types)]
    head += [f"        AscendC::LocalTensor<{t}> work_{t} = workBuf.Get<{t}>();" for t in red_types]
    head += [f"        AscendC::LocalTensor<{t}> red_{t} = redBuf.Get<{t}>();" for t in red_types]
    if compare:
        head.append("        AscendC::LocalTensor<uint8_t> mask = maskBuf.Get<uint8_t>();")
    members = ["    AscendC::TPipe pipe;"]
    members += [f"    AscendC::TQue<AscendC::TPosition::VECIN, BUFFER_NUM> inQueue{i};" for i in tiles]
    members += ["    AscendC::TQue<AscendC::TPosition::VECOUT, BUFFER_NUM> outQueue;",
                "    AscendC::TBuf<AscendC::TPosition::VECCALC> workBuf;",
                "    AscendC::TBuf<AscendC::TPosition::VECCALC> redBuf;"]
    members += [f"    AscendC::TBuf<AscendC::TPosition::VECCALC> tmpBuf{k};" for k in range(temps)]
    if compare:
        members.append("    AscendC::TBuf<AscendC::TPosition::VECCALC> maskBuf;")
    members += [f"    AscendC::GlobalTensor<{storage_type(b.dtype, b.name)}> {gm[id(b)]};" for b in bufs]
    members += [f"    float s{i} = 0;" for i in scalars] + [f"    float {w} = 0;" for w in internal.values()]
    members += [f"    EmberTiling_{name} tiling;", "    int64_t first = 0;", "    int64_t units = 0;"]
    fields = ["formerNum", "formerLen", "tailLen", "tileLen", "rowLen", "rows"] + \
             [f"size_{ident(b.name)}" for b in bufs]
    values = [split.former_num, split.former, split.tail, tile, d, rows] + [_numel(b) for b in bufs]
    decode = _decode(base, "r")
    text = "\n".join([
        tiling_struct(name, fields), f"class {cls} {{", "public:", f"    __aicore__ inline {cls}() {{}}",
        f"    __aicore__ inline void Init({', '.join(f'GM_ADDR {ident(b.name)}' for b in bufs)}, "
        f"const EmberTiling_{name}& t)", "    {", "        tiling = t;",
        "        const int64_t idx = AscendC::GetBlockIdx();",
        "        first = idx < t.formerNum ? idx * t.formerLen : "
        "t.formerNum * t.formerLen + (idx - t.formerNum) * t.tailLen;",
        "        units = idx < t.formerNum ? t.formerLen : t.tailLen;", *init, "    }",
        "    __aicore__ inline void Process()", "    {",
        "        for (int64_t r = first; r < first + units; ++r) {",
        "            CopyIn(r);", "            Compute();", "            CopyOut(r);", "        }", "    }", "",
        "private:", "    __aicore__ inline void CopyIn(int64_t r)", "    {", *decode, *copy_in, *scalars_in, "    }",
        "    __aicore__ inline void Compute()", "    {", *head,
        f"        AscendC::LocalTensor<{out_t}> y = outQueue.AllocTensor<{out_t}>();",
        *("        " + line for line in lines), "        outQueue.EnQue(y);",
        *(f"        inQueue{i}.FreeTensor(in{i});" for i in tiles), "    }",
        "    __aicore__ inline void CopyOut(int64_t r)", "    {",
        f"        AscendC::LocalTensor<{out_t}> y = outQueue.DeQue<{out_t}>();",
        f"        EmberCopyOut({gm[id(last.out)]}[r * tiling.rowLen], y, tiling.rowLen);",
        "        outQueue.FreeTensor(y);", "    }", "", *members, "};", "",
        entry(name, cls, [ident(b.name) for b in bufs])])
    plan = {"family": "rowwise", "stages": [n.family for n in group], "blocks": split.num_blocks,
            "former_num": split.former_num, "former": split.former, "tail": split.tail, "tile": tile,
            "ub_bytes": ub_bytes(buffers, tile), "ub_budget": budget(soc),
            "bytes_per_core": split.former * d * sum(b.dtype.itemsize for b in bufs)}
    return KernelSource(name, "rowwise", text, [(b.name, b is last.out) for b in bufs], fields, values,
                        split.num_blocks, {}, plan)


def _numel(buf: Buffer) -> int:
    n = 1
    for d in buf.shape:
        n *= d.value
    return n
