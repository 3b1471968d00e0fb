"""Matrix products through the cube unit with the high-level Matmul API (ascendc.md §3, §7.2 item 7).

Work units are (batch, block of rows): former/tail cores share them, each unit is one `IterateAll` of a
`rows x N x K` product into GM. The host fills the TCubeTiling values (base block 128 x 128 x 64 elements, within
L0A/L0B/L0C and L1 of every SoC) into the kernel's int64 tiling struct; the kernel copies them into the
TCubeTiling that REGIST_MATMUL_OBJ registers. Epilogues (bias, activation) are the next element-wise kernel.
"""
from __future__ import annotations

from ...compiler.target import SocInfo
from .analyze import Nest
from .cexpr import CPrinter, ident, storage_type
from .kernel import KernelSource, entry, tiling_struct
from .tiling import TilingChoice, split_units
from .vector import _decode

BASE_M, BASE_N, BASE_K = 128, 128, 64


def render_matmul(name: str, nest: Nest, soc: SocInfo, choice: TilingChoice) -> KernelSource:
    mm = nest.matmul
    assert mm is not None
    t = storage_type(nest.out.dtype, name)
    t_in = storage_type(mm.a.dtype, name)  # half inputs may accumulate into a float result
    batches = 1
    for _, e in nest.outer:
        batches *= e
    pieces = max(1, min(mm.m, -(-choice.cores // batches)))  # row blocks per batch so units ~ cores
    rows_per_unit = min(choice.tile or -(-mm.m // pieces), mm.m)  # a tile choice here is rows per unit
    m_blocks = -(-mm.m // rows_per_unit)
    split = split_units(batches * m_blocks, choice.cores)
    printer = CPrinter(lambda ld: "0")
    bufs = [nest.out] + [b for b in (mm.a, mm.b) if b is not nest.out]
    if mm.a is mm.b:
        bufs = [nest.out, mm.a]
    gm = {id(b): f"{ident(b.name)}Gm" for b in bufs}
    a_row = "m0" if mm.trans_a else f"m0 * {mm.k}"
    cls = f"Kernel_{name}"
    fields = ["formerNum", "formerLen", "tailLen", "rowsPerUnit", "mBlocks", "M", "N", "K", "baseM", "baseN",
              "baseK"] + [f"size_{ident(b.name)}" for b in bufs]
    values = [split.former_num, split.former, split.tail, rows_per_unit, m_blocks, mm.m, mm.n, mm.k, BASE_M,
              BASE_N, BASE_K] + [_numel(b) for b in bufs]
    types = {id(b): storage_type(b.dtype, name) for b in bufs}
    gms = "\n".join(f"        {gm[id(b)]}.SetGlobalBuffer((__gm__ {types[id(b)]}*){ident(b.name)}, "
                    f"t.size_{ident(b.name)});" for b in bufs)
    members = "\n".join(f"    AscendC::GlobalTensor<{types[id(b)]}> {gm[id(b)]};" for b in bufs)
    mt = "AscendC::MatmulType<AscendC::TPosition::GM, CubeFormat::ND, "
    body = f"""\
{tiling_struct(name, fields)}
using {name}_A = {mt}{t_in}, {str(mm.trans_a).lower()}>;
using {name}_B = {mt}{t_in}, {str(mm.trans_b).lower()}>;
using {name}_C = {mt}{t}>;

class {cls} {{
public:
    __aicore__ inline {cls}() {{}}
    __aicore__ inline void Init({", ".join(f"GM_ADDR {ident(b.name)}" for b in bufs)}, const EmberTiling_{name}& t)
    {{
        tiling = t;
        const int64_t idx = AscendC::GetBlockIdx();
        first = idx < t.formerNum ? idx * t.formerLen : t.formerNum * t.formerLen + (idx - t.formerNum) * t.tailLen;
        units = idx < t.formerNum ? t.formerLen : t.tailLen;
{gms}
        cube.usedCoreNum = (int32_t)AscendC::GetBlockNum();
        cube.M = (int32_t)t.M;
        cube.N = (int32_t)t.N;
        cube.Ka = (int32_t)t.K;
        cube.Kb = (int32_t)t.K;
        cube.singleCoreM = (int32_t)t.rowsPerUnit;
        cube.singleCoreN = (int32_t)t.N;
        cube.singleCoreK = (int32_t)t.K;
        cube.baseM = (int32_t)t.baseM;
        cube.baseN = (int32_t)t.baseN;
        cube.baseK = (int32_t)t.baseK;
        cube.depthA1 = 1;
        cube.depthB1 = 1;
        cube.stepM = 1;
        cube.stepN = 1;
        cube.isBias = 0;
        cube.iterateOrder = 0;
        REGIST_MATMUL_OBJ(&pipe, AscendC::GetSysWorkSpacePtr(), mm, &cube);
    }}
    __aicore__ inline void Process()
    {{
        for (int64_t u = first; u < first + units; ++u) {{
            const int64_t r = u / tiling.mBlocks;
            const int64_t m0 = (u % tiling.mBlocks) * tiling.rowsPerUnit;
            const int64_t rows = tiling.M - m0 < tiling.rowsPerUnit ? tiling.M - m0 : tiling.rowsPerUnit;
{chr(10).join("    " + line for line in _decode(nest, "r"))}
            const int64_t aOff = {printer(mm.a_off)};
            const int64_t bOff = {printer(mm.b_off)};
            mm.SetOrgShape((int)tiling.M, (int)tiling.N, (int)tiling.K, (int)tiling.K);
            mm.SetSingleShape((int)rows, (int)tiling.N, (int)tiling.K);
            mm.SetTensorA({gm[id(mm.a)]}[aOff + {a_row}], {str(mm.trans_a).lower()});
            mm.SetTensorB({gm[id(mm.b)]}[bOff], {str(mm.trans_b).lower()});
            mm.IterateAll({gm[id(nest.out)]}[r * tiling.M * tiling.N + m0 * tiling.N]);
            mm.End();
        }}
    }}

private:
    AscendC::TPipe pipe;
    TCubeTiling cube;
    AscendC::Matmul<{name}_A, {name}_B, {name}_C> mm;
{members}
    EmberTiling_{name} tiling;
    int64_t first = 0;
    int64_t units = 0;
}};

"""
    code = body + entry(name, cls, [ident(b.name) for b in bufs]).replace("KERNEL_TYPE_AIV_ONLY",
                                                                           "KERNEL_TYPE_MIX_AIC_1_2")
    plan = {"family": "matmul", "blocks": split.num_blocks, "former_num": split.former_num, "former": split.former,
            "tail": split.tail, "rows_per_unit": rows_per_unit, "base": [BASE_M, BASE_N, BASE_K],
            "bytes_per_core": split.former * rows_per_unit * (mm.k + mm.n) * mm.a.dtype.itemsize}
    return KernelSource(name, "matmul", code, [(b.name, b is nest.out) for b in bufs], fields, values,
                        split.num_blocks, {}, plan)


def _numel(buf) -> int:
    n = 1
    for d in buf.shape:
        n *= d.value
    return n
