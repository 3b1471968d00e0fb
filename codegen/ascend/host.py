"""Host code for one ember kernel (f.source("ascend-host")): CANN's dual path around the kernel launches.

`ASCENDC_CPU_DEBUG` builds run the CPU twin (GmAlloc + ICPU_RUN_KF); NPU builds use aclrtMalloc and
`kernel<<<numBlocks, nullptr, stream>>>`. Inputs are read from `input/<name>.bin`, outputs written to
`output/<name>.bin` (raw little-endian arrays, as CANN's samples do); the tiling structs are filled in.
"""
from __future__ import annotations

from .cexpr import ident
from .kernel import KernelSource


def render_host(func_name: str, kernels: list[KernelSource], buffers: list[tuple[str, int, bool, bool]],
                sizes: dict[str, int]) -> str:
    """`buffers`: (name, bytes, is_input, is_output) for every GM buffer, workspaces included. Symbolic sizes
    are bound to the example values in `sizes`."""
    decls = "\n".join(f'extern "C" __global__ __aicore__ void {k.name}('
                      + ", ".join("GM_ADDR" for _ in k.params) + f", EmberTiling_{k.name} tiling);"
                      for k in kernels)
    structs = "\n".join(k.code.split("\n};\n", 1)[0] + "\n};" for k in kernels)
    fill = []
    for k in kernels:
        vals = ", ".join(str(v if isinstance(v, int) else sizes[v]) for v in k.tiling)
        fill.append(f"    EmberTiling_{k.name} tiling_{k.name}{{{vals}}};  // "
                    + ", ".join(k.tiling_fields))
    cpu_alloc, npu_alloc, cpu_run, npu_run, cpu_free, npu_free, io_in, io_out = ([] for _ in range(8))
    for name, nbytes, is_in, is_out in buffers:
        v = ident(name)
        cpu_alloc.append(f"    uint8_t* {v} = (uint8_t*)AscendC::GmAlloc({nbytes});")
        npu_alloc += [f"    uint8_t* {v}Host; uint8_t* {v};",
                      f"    CHECK_ACL(aclrtMallocHost((void**)(&{v}Host), {nbytes}));",
                      f"    CHECK_ACL(aclrtMalloc((void**)&{v}, {nbytes}, ACL_MEM_MALLOC_HUGE_FIRST));"]
        if is_in:
            cpu_alloc.append(f'    ReadFile("./input/{name}.bin", {nbytes}, {v}, {nbytes});')
            npu_alloc += [f'    ReadFile("./input/{name}.bin", {nbytes}, {v}Host, {nbytes});',
                          f"    CHECK_ACL(aclrtMemcpy({v}, {nbytes}, {v}Host, {nbytes}, "
                          f"ACL_MEMCPY_HOST_TO_DEVICE));"]
        if is_out:
            cpu_free.append(f'    WriteFile("./output/{name}.bin", {v}, {nbytes});')
            npu_free += [f"    CHECK_ACL(aclrtMemcpy({v}Host, {nbytes}, {v}, {nbytes}, ACL_MEMCPY_DEVICE_TO_HOST));",
                         f'    WriteFile("./output/{name}.bin", {v}Host, {nbytes});']
        cpu_free.append(f"    AscendC::GmFree((void*){v});")
        npu_free += [f"    CHECK_ACL(aclrtFree({v}));", f"    CHECK_ACL(aclrtFreeHost({v}Host));"]
    for k in kernels:
        args = ", ".join(ident(p) for p, _ in k.params)
        mode = "MIX_MODE" if k.family == "matmul" else "AIV_MODE"  # the cube kernels need AIC and AIV
        cpu_run += [f"    AscendC::SetKernelMode(KernelMode::{mode});",
                    f"    ICPU_RUN_KF({k.name}, {k.num_blocks}, {args}, tiling_{k.name});"]
        npu_run.append(f"    {k.name}<<<{k.num_blocks}, nullptr, stream>>>({args}, tiling_{k.name});")
    j = "\n".join
    return f"""\
// Host side of ember kernel {func_name}: {len(kernels)} AscendC kernel launch(es), run in order.
#include <cstdint>
#include <cstdio>
#include <fstream>
#include <string>
#ifdef ASCENDC_CPU_DEBUG
#include "tikicpulib.h"
#else
#include "acl/acl.h"
#include "kernel_operator.h"
#endif

{structs}

{decls}

#define CHECK_ACL(x)                                                                  \\
    do {{                                                                              \\
        auto _ret = (x);                                                              \\
        if (_ret != 0) {{ std::fprintf(stderr, "%s failed: %d\\n", #x, (int)_ret); return 1; }} \\
    }} while (0)

static bool ReadFile(const std::string& path, size_t want, void* buf, size_t cap)
{{
    std::ifstream f(path, std::ios::binary);
    if (!f || want > cap) {{ std::fprintf(stderr, "cannot read %s\\n", path.c_str()); return false; }}
    f.read(static_cast<char*>(buf), want);
    return static_cast<size_t>(f.gcount()) == want;
}}

static bool WriteFile(const std::string& path, const void* buf, size_t n)
{{
    std::ofstream f(path, std::ios::binary);
    f.write(static_cast<const char*>(buf), n);
    return static_cast<bool>(f);
}}

int main()
{{
{j(fill)}
#ifdef ASCENDC_CPU_DEBUG
{j(cpu_alloc)}
{j(cpu_run)}
{j(cpu_free)}
#else
    CHECK_ACL(aclInit(nullptr));
    int32_t deviceId = 0;
    CHECK_ACL(aclrtSetDevice(deviceId));
    aclrtStream stream = nullptr;
    CHECK_ACL(aclrtCreateStream(&stream));
{j(npu_alloc)}
{j(npu_run)}
    CHECK_ACL(aclrtSynchronizeStream(stream));
{j(npu_free)}
    CHECK_ACL(aclrtDestroyStream(stream));
    CHECK_ACL(aclrtResetDevice(deviceId));
    CHECK_ACL(aclFinalize());
#endif
    return 0;
}}
"""
