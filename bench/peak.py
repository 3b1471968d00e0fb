"""The machine's float32 FMA peak, to judge how close a kernel is to the limit (a tuned kernel cannot beat it).

Run:  python -m bench.peak

An LLVM loop of 12 independent chains of vector FMAs (the widest vector the host's features allow), compiled with
llvmlite for the host CPU, run on 1 thread and then on every core at once (ctypes releases the GIL). Prints
GFLOP/s for each; compare with `bench.perf`'s GFLOP/s column.
"""
from __future__ import annotations

import ctypes
import os
import threading
import time

import llvmlite.binding as llvm

CHAINS = 12  # enough independent FMAs to cover the latency of two FMA pipes
STEPS = 20_000_000


def _kernel_ir(lanes: int) -> str:
    vt = f"<{lanes} x float>"

    def splat(v: float) -> str:
        return "<" + ", ".join(f"float {v}" for _ in range(lanes)) + ">"
    lines = [f"declare {vt} @llvm.fma.v{lanes}f32({vt}, {vt}, {vt})", "define float @peak(i64 %n) {", "entry:",
             "  br label %loop", "loop:", "  %i = phi i64 [0, %entry], [%i2, %loop]"]
    lines += [f"  %a{k} = phi {vt} [{splat(1.0 + k / 8)}, %entry], [%b{k}, %loop]" for k in range(CHAINS)]
    lines += [f"  %b{k} = call {vt} @llvm.fma.v{lanes}f32({vt} %a{k}, {vt} {splat(0.5)}, {vt} {splat(0.25)})"
              for k in range(CHAINS)]
    lines += ["  %i2 = add i64 %i, 1", "  %c = icmp ult i64 %i2, %n", "  br i1 %c, label %loop, label %done",
              "done:"]
    acc = "%b0"
    for k in range(1, CHAINS):
        lines.append(f"  %s{k} = fadd {vt} {acc}, %b{k}")
        acc = f"%s{k}"
    return "\n".join(lines + [f"  %r = extractelement {vt} {acc}, i32 0", "  ret float %r", "}"])


def main() -> int:
    llvm.initialize_native_target()
    llvm.initialize_native_asmprinter()
    features = llvm.get_host_cpu_features().flatten()
    lanes = 16 if "+avx512f" in features else 8 if "+avx" in features else 4
    tm = llvm.Target.from_default_triple().create_target_machine(cpu=llvm.get_host_cpu_name(), features=features,
                                                                  opt=3)
    engine = llvm.create_mcjit_compiler(llvm.parse_assembly(_kernel_ir(lanes)), tm)
    engine.finalize_object()
    peak = ctypes.CFUNCTYPE(ctypes.c_float, ctypes.c_int64)(engine.get_function_address("peak"))
    peak(1000)
    cores = os.cpu_count() or 1
    for threads in sorted({1, cores}):
        workers = [threading.Thread(target=peak, args=(STEPS,)) for _ in range(threads)]
        start = time.perf_counter()
        for w in workers:
            w.start()
        for w in workers:
            w.join()
        seconds = time.perf_counter() - start
        flops = threads * STEPS * CHAINS * lanes * 2
        print(f"{threads} thread(s), {lanes}-lane FMA: {flops / seconds / 1e9:.0f} GFLOP/s")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
