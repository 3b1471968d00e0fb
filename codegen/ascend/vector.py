"""Vector kernels in the canonical TPipe/TQue form: element-wise chains and row reductions.

Both walk rows: a row is the trailing block of axes over which every operand is contiguous (element-wise) or the
reduced axis (row_reduce); the outer axes are decoded from the row number to find each operand's offset.
CopyIn/Compute/CopyOut move one tile of a row through VECIN/VECOUT queues (BUFFER_NUM = 2); temporaries are
TBuf<VECCALC> buffers; per-row scalar operands are read once per row with GetValue.
"""
from __future__ import annotations

from ...compiler.target import SocInfo
from ...ir.loops import Load
from ...ir.simplify import affine
from .analyze import Nest, operand_of
from .cexpr import AscendError, CPrinter, ident, storage_type
from .kernel import KernelSource, entry, tiling_struct
from .tiling import (BLOCK, MAX_IN_QUEUES, Buffers, CoreSplit, TilingChoice, align_up, budget, choose_tile, split_units,
                     ub_bytes)
from .vexpr import Unvectorizable, VectorCode, VectorCompiler

GROUP_MAX = 1024  # per-row results gathered in one VECOUT tile before they are copied out


def _decode(nest: Nest, row: str) -> list[str]:
    """C++ that sets each outer loop variable from the row number (row-major)."""
    lines, rem = [], row
    for i, (v, n) in enumerate(reversed(nest.outer)):
        last = i == len(nest.outer) - 1
        lines.append(f"        const int64_t {ident(v.name)} = {rem if last else f'{rem} % {n}'};")
        if not last:
            lines.append(f"        const int64_t r{i} = {rem} / {n};")
            rem = f"r{i}"
    return lines


class _Parts:
    """Names and declarations shared by the two vector templates."""

    def __init__(self, name: str, nest: Nest, soc: SocInfo):
        self.name, self.nest, self.soc = name, nest, soc
        self.tiles = [i for i, op in enumerate(nest.operands) if op.tile]
        self.scalars = [i for i, op in enumerate(nest.operands) if not op.tile]
        if len(self.tiles) > MAX_IN_QUEUES:
            raise Unvectorizable(f"{len(self.tiles)} input tiles exceed {MAX_IN_QUEUES} VECIN buffers")
        self.printer = CPrinter(lambda ld: self._scalar_of(ld))
        bufs = [nest.out] + [op.buffer for op in nest.operands]
        self.bufs = []
        for b in bufs:
            storage_type(b.dtype, f"kernel {name}, buffer {b.name}")
            if all(b is not x for x in self.bufs):
                self.bufs.append(b)

    def _scalar_of(self, ld: Load) -> str:
        return f"s{operand_of(self.nest, ld)}"

    def tile_name(self, ld: Load) -> "str | None":
        i = operand_of(self.nest, ld)
        return f"in{i}" if self.nest.operands[i].tile else None

    def t(self, i: int) -> str:
        return storage_type(self.nest.operands[i].buffer.dtype, self.name)

    def gm(self, b) -> str:
        return f"{ident(b.name)}Gm"

    def offsets(self) -> list[str]:
        lines = []
        for i in self.tiles:
            lines.append(f"        off{i} = {self.printer(self.nest.operands[i].offset)};")
        for i in self.scalars:
            op = self.nest.operands[i]
            raw = f"{self.gm(op.buffer)}.GetValue({self.printer(op.offset)})"
            lines.append(f"        s{i} = (float){raw};" if op.buffer.dtype.bits == 16 else f"        s{i} = {raw};")
        return lines

    def members(self, extra: list[str]) -> str:
        out = ["    AscendC::TPipe pipe;"]
        out += [f"    AscendC::TQue<AscendC::TPosition::VECIN, BUFFER_NUM> inQueue{i};" for i in self.tiles]
        out += ["    AscendC::TQue<AscendC::TPosition::VECOUT, BUFFER_NUM> outQueue;"]
        out += extra
        out += [f"    AscendC::GlobalTensor<{storage_type(b.dtype, b.name)}> {self.gm(b)};" for b in self.bufs]
        out += [f"    int64_t off{i} = 0;" for i in self.tiles]
        out += [f"    float s{i} = 0;" if self.nest.operands[i].buffer.dtype.bits == 16 else
                f"    {self.t(i)} s{i} = 0;" for i in self.scalars]
        out += [f"    EmberTiling_{self.name} tiling;", "    int64_t first = 0;", "    int64_t units = 0;"]
        return "\n".join(out)

    def init(self, code: VectorCode, extra: list[str]) -> str:
        params = ", ".join(f"GM_ADDR {ident(b.name)}" for b in self.bufs)
        lines = [f"    __aicore__ inline void Init({params}, const EmberTiling_{self.name}& t)", "    {",
                 "        tiling = t;",
                 "        const int64_t idx = AscendC::GetBlockIdx();",
                 "        first = idx < t.formerNum ? idx * t.formerLen : "
                 "t.formerNum * t.formerLen + (idx - t.formerNum) * t.tailLen;",
                 "        units = idx < t.formerNum ? t.formerLen : t.tailLen;"]
        for b in self.bufs:
            lines.append(f"        {self.gm(b)}.SetGlobalBuffer((__gm__ {storage_type(b.dtype, b.name)}*)"
                         f"{ident(b.name)}, t.size_{ident(b.name)});")
        for i in self.tiles:
            lines.append(f"        pipe.InitBuffer(inQueue{i}, BUFFER_NUM, t.tileLen * sizeof({self.t(i)}));")
        lines += extra
        for k in range(code.temps):
            lines.append(f"        pipe.InitBuffer(tmpBuf{k}, t.tileLen * sizeof(float));")
        if code.uses_compare:
            lines.append("        pipe.InitBuffer(maskBuf, (t.tileLen / 8 + 31) / 32 * 32);")
        return "\n".join(lines + ["    }"])

    def copy_in(self) -> str:
        lines = ["    __aicore__ inline void CopyIn(int64_t c, int64_t len)", "    {"]
        for i in self.tiles:
            t, gm = self.t(i), self.gm(self.nest.operands[i].buffer)
            lines += [f"        AscendC::LocalTensor<{t}> x{i} = inQueue{i}.AllocTensor<{t}>();",
                      f"        EmberCopyIn(x{i}, {gm}[off{i} + c], len);",
                      f"        inQueue{i}.EnQue(x{i});"]
        return "\n".join(lines + ["    }"])

    def compute_head(self, code: VectorCode) -> list[str]:
        lines = ["        const int32_t count = (int32_t)len;"]
        if code.uses_compare:
            lines.append("        const int32_t acount = (int32_t)((len + ALIGN - 1) / ALIGN * ALIGN);")
        for i in self.tiles:
            lines.append(f"        AscendC::LocalTensor<{self.t(i)}> in{i} = inQueue{i}.DeQue<{self.t(i)}>();")
        for slot, t in sorted(code.temp_types):
            lines.append(f"        AscendC::LocalTensor<{t}> tmp{slot}_{t} = tmpBuf{slot}.Get<{t}>();")
        if code.uses_compare:
            lines.append("        AscendC::LocalTensor<uint8_t> mask = maskBuf.Get<uint8_t>();")
        return lines

    def free_inputs(self) -> list[str]:
        return [f"        inQueue{i}.FreeTensor(in{i});" for i in self.tiles]

    def temp_members(self, code: VectorCode) -> list[str]:
        out = [f"    AscendC::TBuf<AscendC::TPosition::VECCALC> tmpBuf{k};" for k in range(code.temps)]
        if code.uses_compare:
            out.append("    AscendC::TBuf<AscendC::TPosition::VECCALC> maskBuf;")
        return out

    def sizes(self, pad: dict) -> list[int]:
        out = []
        for b in self.bufs:
            n = 1
            for d in b.shape:
                n *= d.value
            out.append(pad.get(b.name, n))
        return out

    def min_itemsize(self) -> int:
        return min([b.dtype.itemsize for b in self.bufs] + [4])

    def check_310p(self, row: int) -> None:
        """Without DataCopyPad every copy must start and end on 32-byte blocks: rows and offsets aligned."""
        for b, off in [(self.nest.out, None)] + [(op.buffer, op.offset) for op in self.nest.operands if op.tile]:
            blk = BLOCK // b.dtype.itemsize
            form = affine(off) if off is not None else ({}, 0)
            if row % blk or form is None or form[1] % blk or any(c % blk for c in form[0].values()):
                raise AscendError(f"kernel {self.name}: rows of {row} {b.dtype} elements of {b.name} are not "
                                  f"32-byte aligned; unaligned copies need DataCopyPad, which {self.soc.name} "
                                  f"(arch {self.soc.arch}) does not have")


def render_elementwise(name: str, nest: Nest, soc: SocInfo, choice: TilingChoice) -> KernelSource:
    p = _Parts(name, nest, soc)
    out_t = storage_type(nest.out.dtype, name)
    code = VectorCompiler(p.tile_name, p._scalar_of).to_tile(nest.value, "y")
    rows = 1
    for _, n in nest.outer:
        rows *= n
    row = nest.row
    split_rows = rows > 1
    blk = BLOCK // p.min_itemsize()
    buffers = Buffers(tuple(nest.operands[i].buffer.dtype.itemsize for i in p.tiles) + (nest.out.dtype.itemsize,),
                      code.temps, code.uses_compare, 0, p.min_itemsize())
    pad: dict[str, int] = {}
    if split_rows:
        split = split_units(rows, choice.cores)
        work = row
        if not soc.has_data_copy_pad:
            p.check_310p(row)
    else:
        blocks = split_units(-(-row // blk), choice.cores)  # whole 32-byte blocks per core
        split = CoreSplit(blocks.num_blocks, blocks.former_num, blocks.former * blk, blocks.tail * blk)
        work = split.former
        if not soc.has_data_copy_pad:
            padded = align_up(row, blk)
            pad = {b.name: padded for b in [nest.out] + [nest.operands[i].buffer for i in p.tiles]}
            row = padded
    tile = choose_tile(name, buffers, soc, work, choice.tile)
    decode = _decode(nest, "r")
    process = (["        for (int64_t r = first; r < first + units; ++r) {", "            Row(r, 0, tiling.rowLen);",
                "        }"] if split_rows else
               ["        const int64_t end = first + units < tiling.rowLen ? first + units : tiling.rowLen;",
                "        if (end > first) {", "            Row(0, first, end - first);", "        }"])
    cls = f"Kernel_{name}"
    body = [
        f"class {cls} {{", "public:", f"    __aicore__ inline {cls}() {{}}",
        p.init(code, [f"        pipe.InitBuffer(outQueue, BUFFER_NUM, t.tileLen * sizeof({out_t}));"]),
        "    __aicore__ inline void Process()", "    {", *process, "    }", "", "private:",
        "    __aicore__ inline void Row(int64_t r, int64_t c0, int64_t n)", "    {", *decode, *p.offsets(),
        "        offOut = r * tiling.rowLen + c0;",
        "        for (int64_t c = 0; c < n; c += tiling.tileLen) {",
        "            const int64_t len = n - c < tiling.tileLen ? n - c : tiling.tileLen;",
        "            CopyIn(c0 + c, len);",
        "            Compute(len);", "            CopyOut(c, len);", "        }", "    }",
        p.copy_in(),
        "    __aicore__ inline void Compute(int64_t len)", "    {", *p.compute_head(code),
        f"        AscendC::LocalTensor<{out_t}> y = outQueue.AllocTensor<{out_t}>();",
        *("        " + line for line in code.lines),
        "        outQueue.EnQue(y);", *p.free_inputs(), "    }",
        "    __aicore__ inline void CopyOut(int64_t c, int64_t len)", "    {",
        f"        AscendC::LocalTensor<{out_t}> y = outQueue.DeQue<{out_t}>();",
        f"        EmberCopyOut({p.gm(nest.out)}[offOut + c], y, len);", "        outQueue.FreeTensor(y);", "    }",
        "", p.members(p.temp_members(code) + ["    int64_t offOut = 0;"]), "};", ""]
    return _finish(name, "elementwise", p, body, split, tile, row, rows, buffers, pad, soc, code)


def _finish(name, family, p: _Parts, body, split, tile, row, rows, buffers, pad, soc, code, extra_fields=()):
    fields = ["formerNum", "formerLen", "tailLen", "tileLen", "rowLen", "rows", *extra_fields[::2]] + \
             [f"size_{ident(b.name)}" for b in p.bufs]
    values = [split.former_num, split.former, split.tail, tile, row, rows, *extra_fields[1::2]] + p.sizes(pad)
    align = (256 if code.uses_compare else BLOCK) // p.min_itemsize()
    text = (tiling_struct(name, fields) + f"\nconstexpr int64_t ALIGN_{name} = {align};\n" +
            "\n".join(body).replace("ALIGN", f"ALIGN_{name}") + "\n" +
            entry(name, f"Kernel_{name}", [ident(b.name) for b in p.bufs]))
    written = {id(p.nest.out)}
    used = ub_bytes(buffers, tile)
    elems = sum(b.dtype.itemsize for b in p.bufs)
    plan = {"family": family, "blocks": split.num_blocks, "former_num": split.former_num, "former": split.former,
            "tail": split.tail, "tile": tile, "ub_bytes": used, "ub_budget": budget(soc),
            "bytes_per_core": split.former * (row if family == "row_reduce" or rows > 1 else 1) * elems}
    return KernelSource(name, family, text, [(b.name, id(b) in written) for b in p.bufs], fields, values,
                        split.num_blocks, pad, plan)


_INIT = {"sum": "0.0f", "max": "(-__builtin_inff())", "min": "__builtin_inff()"}
_REDUCE = {"sum": "ReduceSum", "max": "ReduceMax", "min": "ReduceMin"}
_COMBINE = {"sum": "acc + part", "max": "(part > acc ? part : acc)", "min": "(part < acc ? part : acc)"}


def render_row_reduce(name: str, nest: Nest, soc: SocInfo, choice: TilingChoice) -> KernelSource:
    p = _Parts(name, nest, soc)
    t = storage_type(nest.out.dtype, name)
    comp = VectorCompiler(p.tile_name, p._scalar_of)
    code, val = comp.to_any(nest.value)
    from .vexpr import VScalar
    if isinstance(val, VScalar) or not p.tiles:
        raise AscendError(f"kernel {name}: a reduction of a row-constant value is left to the scalar unit")
    rows = 1
    for _, n in nest.outer:
        rows *= n
    row = nest.row
    if not soc.has_data_copy_pad:
        p.check_310p(row)
        if rows % (BLOCK // nest.out.dtype.itemsize):
            raise AscendError(f"kernel {name}: {rows} row results of {nest.out.dtype} are not 32-byte aligned; "
                              f"copying them out needs DataCopyPad, which {soc.name} does not have")
    split = split_units(rows, choice.cores)
    oblk = BLOCK // nest.out.dtype.itemsize
    group = min(align_up(split.former, oblk), GROUP_MAX)
    fixed = 2 * align_up(group * nest.out.dtype.itemsize, BLOCK) + BLOCK
    buffers = Buffers(tuple(nest.operands[i].buffer.dtype.itemsize for i in p.tiles), code.temps + 1,
                      code.uses_compare, fixed, p.min_itemsize())
    tile = choose_tile(name, buffers, soc, row, choice.tile)
    half = nest.out.dtype.bits == 16
    combine = f"ember_rh({_COMBINE['sum']})" if half and nest.combiner == "sum" else _COMBINE[nest.combiner]
    reduce_call = (f"AscendC::{_REDUCE[nest.combiner]}<{t}>(red, {val.name}, work, count"
                   + (");" if nest.combiner == "sum" else ", false);"))
    cls = f"Kernel_{name}"
    body = [
        f"class {cls} {{", "public:", f"    __aicore__ inline {cls}() {{}}",
        p.init(code, [f"        pipe.InitBuffer(outQueue, BUFFER_NUM, t.groupLen * sizeof({t}));",
                      "        pipe.InitBuffer(workBuf, t.tileLen * sizeof(float));",
                      "        pipe.InitBuffer(redBuf, 32);"]),
        "    __aicore__ inline void Process()", "    {",
        "        for (int64_t g = 0; g < units; g += tiling.groupLen) {",
        "            const int64_t gn = units - g < tiling.groupLen ? units - g : tiling.groupLen;",
        f"            AscendC::LocalTensor<{t}> y = outQueue.AllocTensor<{t}>();",
        "            for (int64_t q = 0; q < gn; ++q) {",
        f"                y.SetValue(q, ({t})Row(first + g + q));", "            }",
        "            outQueue.EnQue(y);", "            CopyOut(first + g, gn);", "        }", "    }", "",
        "private:", "    __aicore__ inline float Row(int64_t r)", "    {", *_decode(nest, "r"), *p.offsets(),
        f"        float acc = {_INIT[nest.combiner]};",
        "        for (int64_t c = 0; c < tiling.rowLen; c += tiling.tileLen) {",
        "            const int64_t len = tiling.rowLen - c < tiling.tileLen ? tiling.rowLen - c : tiling.tileLen;",
        "            CopyIn(c, len);", "            const float part = Compute(len);",
        f"            acc = {combine};", "        }", "        return acc;", "    }",
        p.copy_in(),
        "    __aicore__ inline float Compute(int64_t len)", "    {", *p.compute_head(code),
        "        AscendC::LocalTensor<float> work = workBuf.Get<float>();" if t == "float" else
        f"        AscendC::LocalTensor<{t}> work = workBuf.Get<{t}>();",
        f"        AscendC::LocalTensor<{t}> red = redBuf.Get<{t}>();",
        *("        " + line for line in code.lines), f"        {reduce_call}",
        "        const float part = (float)red.GetValue(0);", *p.free_inputs(), "        return part;", "    }",
        "    __aicore__ inline void CopyOut(int64_t r0, int64_t n)", "    {",
        f"        AscendC::LocalTensor<{t}> y = outQueue.DeQue<{t}>();",
        f"        EmberCopyOut({p.gm(nest.out)}[r0], y, n);", "        outQueue.FreeTensor(y);", "    }", "",
        p.members(p.temp_members(code) + ["    AscendC::TBuf<AscendC::TPosition::VECCALC> workBuf;",
                                          "    AscendC::TBuf<AscendC::TPosition::VECCALC> redBuf;"]), "};", ""]
    return _finish(name, "row_reduce", p, body, split, tile, row, rows, buffers, {}, soc, code,
                   ("groupLen", group))
