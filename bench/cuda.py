"""GPU performance of ember's cuda target next to cupy's own kernels (cuBLAS, element-wise, reductions) and
onnxruntime-gpu, with the issue's aims: float16 MatMul 4096^3 at least 0.8x cuBLAS, float32 at least 0.7x,
the element-wise chain and Softmax at least 85% of the device's peak memory bandwidth.

Run:  python -m bench.cuda                        (on a machine with an NVIDIA GPU and cupy; a few minutes)
      python -m bench.perf --target cuda          (the same, from the CPU benchmark's command line)
      python -m bench.cuda --match MatMul         (only the cases whose 'name shape dtype' contains a pattern)
      python -m bench.cuda --target "cuda -emulate"   (or --smoke: tiny shapes on the CPU emulator)

Each case is a small ONNX model compiled by `ember.compile(model, target="cuda -arch=<the device's>")` and run on
cupy arrays. The reference is cupy (`cupy.matmul`, an ElementwiseKernel, cupy expressions) or, for the
convolutions and the ResNet- and BERT-style models, onnxruntime with the CUDA execution provider and device-bound
inputs (the column says n/a where onnxruntime or that provider is missing; its CPU provider still checks ember's
result).
Times: warm-up, then batches of calls between cupy events, in alternating rounds (ember, reference, ember, ...);
median and min of the batches' per-call times. `x ref` is ember's speed as a multiple of the reference's (0.8x:
ember takes 1.25 times as long); `% peak` is achieved GB/s over the device's memoryClockRate x 2 x busWidth / 8.
Every ember result is compared with the reference's ("ok" or "MISMATCH"); a case that cannot compile or run is
"FAILED (stage: reason)" and the others go on. Writes bench/results/cuda.json and cuda.md; the smoke mode proves
the cases build, run and check (its timings are meaningless) and writes cuda_emulate.* only under an --out
directory. Exits 1 when a check or a case fails, 2 when the target cannot run here.
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np

import ember
from ember.compiler.target import TargetError, parse_target
from ember.runtime.cache import reset_default_cache

from .common import table
from .cuda_cases import GpuCase, cuda_cases
from .cuda_runtime import EmulatedRuntime, GpuRuntime, missing_gpu, ort_module, ort_session, peer_unavailable

RESULTS = Path(__file__).resolve().parent / "results"
TOLERANCE = {"float32": 1e-3, "float16": 1e-2}  # max |ember - reference| / max |reference|
MAX_REPS = 1000
EMULATE_HINT = 'python -m bench.cuda --target "cuda -emulate" checks the harness on the CPU'


def check(got: list[np.ndarray], want: list[np.ndarray], dtype: str) -> str:
    """'ok', or MISMATCH with the shape or the worst error relative to the reference's largest magnitude."""
    if len(got) != len(want):
        return f"MISMATCH ({len(got)} outputs, expected {len(want)})"
    errors = []
    for g, w in zip(got, want):
        if g.shape != w.shape:
            return f"MISMATCH (shape {g.shape}, expected {w.shape})"
        if w.size:
            g64, w64 = g.astype(np.float64), w.astype(np.float64)
            errors.append(float(np.abs(g64 - w64).max()) / max(float(np.abs(w64).max()), 1e-6))
    bad = [e for e in errors if not e <= TOLERANCE[dtype]]  # NaN fails too
    if not bad:
        return "ok"
    worst = float("nan") if any(np.isnan(bad)) else max(bad)
    return f"MISMATCH (error {worst:.1e} > {TOLERANCE[dtype]:.0e})"


def measure(fns: list[Callable[[], object]], elapsed: Callable[[Callable[[], object], int], float],
            rounds: int, sample_s: float, warmup: int) -> list[dict]:
    """Per-call seconds of each contender: after `warmup` calls, batches sized to last about `sample_s`, taken
    in alternating rounds so a slow phase (clocks, another process) hits every contender alike."""
    reps = []
    for fn in fns:
        for _ in range(warmup):
            fn()
        one = elapsed(fn, 1)
        reps.append(max(1, min(MAX_REPS, int(sample_s / max(one, 1e-9)))))
    samples: list[list[float]] = [[] for _ in fns]
    for _ in range(rounds):
        for fn, n, out in zip(fns, reps, samples):
            out.append(elapsed(fn, n))
    return [{"median": statistics.median(s), "min": min(s), "batches": len(s), "calls_per_batch": n}
            for s, n in zip(samples, reps)]


def reference_for(case: GpuCase, runtime: Any, inputs: dict[str, Any]) -> tuple[Any, list[np.ndarray] | None, str]:
    """(timed reference or None, outputs to check ember against or None, the reference's name or why it is n/a)."""
    if case.reference is not None:
        fn = case.reference(runtime.xp)
        args = list(inputs.values())
        name = "numpy" if runtime.emulated else case.reference_name
        return (lambda: fn(*args)), [runtime.download(fn(*args))], name
    ort = ort_module()
    if ort is None:
        return None, None, peer_unavailable(ort, runtime.ort_provider)
    want = ort_session(ort, case.model, ["CPUExecutionProvider"]).run(None, case.feeds)
    why = peer_unavailable(ort, runtime.ort_provider)
    peer = why or runtime.ort_peer(ort, case.model, inputs, want)
    if isinstance(peer, str):
        return None, want, peer
    return peer, want, "onnxruntime" + (" (CPU)" if runtime.emulated else " (CUDA EP)")


def run_case(case: GpuCase, runtime: Any, timing: dict) -> dict:
    """Compile, check and time one case. A failure at any stage becomes the row's check ("FAILED (stage: ...)")
    so one broken kernel does not cost the rest of a GPU run."""
    row: dict = {"case": case.name, "shape": case.shape, "dtype": case.dtype, "unit": case.unit,
                 "aim": str(case.aim) if case.aim else None, "compile_s": None, "ember": None,
                 "reference": case.reference_name, "ref": None, "x_ref": None, "ember_rate": None, "ref_rate": None,
                 "pct_peak": None, "verdict": "-"}
    stage = "compile"
    try:
        t0 = time.perf_counter()
        compiled = ember.compile(case.model, target=runtime.target)
        row["compile_s"] = time.perf_counter() - t0
        stage = "reference"
        inputs = {k: runtime.upload(v) for k, v in case.feeds.items()}
        ref_fn, want, row["reference"] = reference_for(case, runtime, inputs)
        stage = "run"
        got = [runtime.download(o) for o in compiled.run(inputs).values()]
        row["check"] = "unchecked (no reference)" if want is None else check(got, [np.asarray(w) for w in want],
                                                                              case.dtype)
        stage = "timing"
        fns: list[Callable[[], object]] = [lambda: compiled.run(inputs)] + ([ref_fn] if ref_fn else [])
        times = measure(fns, runtime.elapsed, **timing)
    except Exception as err:  # noqa: BLE001 - reported in the table, the run goes on
        reason = str(err).strip().splitlines()[0][:160] if str(err).strip() else ""
        row["check"] = f"FAILED ({stage}: {type(err).__name__}{': ' if reason else ''}{reason})"
        print(f"  {case.label}: {row['check']}", flush=True)
        return row
    ember_t, ref_t = times[0], (times[1] if ref_fn else None)
    row.update(ember=ember_t, ref=ref_t, x_ref=ref_t["median"] / ember_t["median"] if ref_t else None)
    scale = 1e12 if case.unit == "TFLOP/s" else 1e9
    row["ember_rate"] = case.work / ember_t["median"] / scale if case.work else None
    row["ref_rate"] = case.work / ref_t["median"] / scale if case.work and ref_t else None
    peak = runtime.device.get("peak_gbs")
    row["pct_peak"] = row["ember_rate"] / peak if case.unit == "GB/s" and peak else None
    row["verdict"] = verdict(case, row, runtime.emulated)
    print(f"  {case.label}: ember {ms(ember_t)} ms, {row['reference']} {ms(ref_t)} ms  {row['check']}", flush=True)
    return row


def verdict(case: GpuCase, row: dict, emulated: bool) -> str:
    """Whether the issue's aim is met: '-' without an aim or under the emulator, 'n/a' without the figure."""
    if case.aim is None or emulated:
        return "-"
    value = row["x_ref"] if case.aim.kind == "ratio" else row["pct_peak"]
    if value is None:
        return "n/a"
    return "met" if value >= case.aim.value else "missed"


def ms(t: "dict | None", key: str = "median") -> str:
    return "-" if t is None else f"{t[key] * 1e3:.3f}"


def fmt(value: "float | None", spec: str) -> str:
    return "-" if value is None else format(value, spec)


def result_table(rows: list[dict]) -> str:
    body = [[r["case"], r["shape"], r["dtype"], ms(r["ember"]), ms(r["ember"], "min"), r["reference"], ms(r["ref"]),
             ms(r["ref"], "min"), f"{fmt(r['ember_rate'], '.2f')} / {fmt(r['ref_rate'], '.2f')} {r['unit']}".strip(),
             fmt(r["x_ref"], ".2f") + ("x" if r["x_ref"] is not None else ""), fmt(r["pct_peak"], ".0%"),
             r["aim"] or "-", r["verdict"], r["check"]] for r in rows]
    return table(body, ["case", "shape", "dtype", "ember ms", "(min)", "reference", "ref ms", "(min)",
                        "rate ember / ref", "x ref", "% peak", "aim", "verdict", "check"])


def device_line(runtime: Any) -> str:
    dev, peak = runtime.device, runtime.device.get("peak_gbs")
    return f"device: {dev['name']}; target: {runtime.target}; peak memory bandwidth: " + \
        (f"{peak:.0f} GB/s" if peak else "unknown")


def write_results(out: Path, stem: str, info: dict, text: str) -> Path:
    out.mkdir(parents=True, exist_ok=True)
    (out / f"{stem}.json").write_text(json.dumps(info, indent=2))
    (out / f"{stem}.md").write_text(f"# bench.cuda\n\n{info['device_line']}\n\n```\n{text}\n```\n")
    return out / f"{stem}.json"


def runtime_for(target_text: str) -> "EmulatedRuntime | GpuRuntime | str":
    """The runtime for a cuda target string, or a one-line reason why it cannot run here."""
    try:
        target = parse_target(target_text)
    except TargetError as err:
        return str(err)
    if target.kind != "cuda":
        return f"--target must be a cuda target (\"cuda\" or \"cuda -emulate\"), got {target_text!r}"
    if target.get("emulate"):
        return EmulatedRuntime(target_text)
    problem = missing_gpu()
    if problem is not None:
        return f"cannot run the GPU benchmark: {problem}; {EMULATE_HINT}"
    runtime = GpuRuntime(target_text)
    try:
        parse_target(runtime.target)  # the device's -arch must be one ember compiles for
    except TargetError as err:
        return f"the device needs target {runtime.target!r}, which ember refuses: {err}"
    return runtime


@contextmanager
def private_cache() -> Iterator[None]:
    """A fresh artifact cache for the run: compile times are cold ones and the user's cache is left alone."""
    previous = os.environ.get("EMBER_CACHE_DIR")
    with tempfile.TemporaryDirectory(prefix="ember-bench-cuda-") as tmp:
        os.environ["EMBER_CACHE_DIR"] = tmp
        reset_default_cache()
        try:
            yield
        finally:
            if previous is None:
                del os.environ["EMBER_CACHE_DIR"]
            else:
                os.environ["EMBER_CACHE_DIR"] = previous
            reset_default_cache()


def parse_args(argv: "list[str] | None") -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--target", default="cuda", help='"cuda" (a GPU through cupy) or "cuda -emulate"')
    parser.add_argument("--smoke", action="store_true", help='the same as --target "cuda -emulate"')
    parser.add_argument("--match", action="append", default=[], metavar="TEXT",
                        help="keep only cases whose 'name shape dtype' contains TEXT (repeatable: any of them)")
    parser.add_argument("--rounds", type=int, default=7, help="alternating timing rounds per case (GPU)")
    parser.add_argument("--sample-ms", type=float, default=50.0, help="length of one timed batch of calls (GPU)")
    parser.add_argument("--out", type=Path, default=None,
                        help="directory for the results (default bench/results on a GPU; emulated: not written)")
    return parser.parse_args(argv)


def main(argv: "list[str] | None" = None) -> int:
    args = parse_args(argv)
    runtime = runtime_for("cuda -emulate" if args.smoke else args.target)
    if isinstance(runtime, str):
        print(f"bench.cuda: {runtime}", file=sys.stderr)
        return 2
    timing = ({"rounds": 2, "sample_s": 0.0, "warmup": 1} if runtime.emulated else
              {"rounds": args.rounds, "sample_s": args.sample_ms / 1e3, "warmup": 3})
    cases = [c for c in cuda_cases(smoke=runtime.emulated)
             if not args.match or any(m in c.label for m in args.match)]
    info = {"device": runtime.device, "target": runtime.target, "emulated": runtime.emulated,
            "device_line": device_line(runtime), "timing": timing}
    print(info["device_line"] + "\n", flush=True)
    with private_cache():
        info["cases"] = [run_case(case, runtime, timing) for case in cases]
    text = result_table(info["cases"]) if info["cases"] else "(no case matched)"
    print("\n" + text)
    out = args.out or (None if runtime.emulated else RESULTS)
    if out is not None:
        path = write_results(out, "cuda_emulate" if runtime.emulated else "cuda", info, text)
        print(f"\nresults written to {path} (and .md)")
    return 1 if any(r["check"].startswith(("MISMATCH", "FAILED")) for r in info["cases"]) else 0


if __name__ == "__main__":
    sys.exit(main())
