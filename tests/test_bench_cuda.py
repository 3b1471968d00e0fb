"""bench.cuda, the GPU benchmark, without a GPU: its emulated smoke mode runs every case on tiny shapes and checks
each result, the GPU runtime's own logic runs against a stand-in cupy, and a machine without cupy or a device gets
one clear line and a non-zero status."""
from __future__ import annotations

import importlib
import json
import subprocess
import sys
from pathlib import Path
from types import ModuleType, SimpleNamespace

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

ROOT = Path(__file__).resolve().parents[1]
NO_CUPY = "import sys; sys.modules['cupy'] = None; "  # makes `import cupy` fail, as on a machine without it


@pytest.fixture(scope="module")
def bench():
    """bench.cuda and bench.cuda_runtime, imported from the repository root (bench is not an installed package)."""
    with pytest.MonkeyPatch.context() as mp:
        mp.syspath_prepend(str(ROOT))
        yield SimpleNamespace(cuda=importlib.import_module("bench.cuda"),
                              runtime=importlib.import_module("bench.cuda_runtime"))


def run_python(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, *args], cwd=ROOT, capture_output=True, text=True, timeout=300)


def test_smoke_mode_runs_and_checks_every_case(tmp_path):
    done = run_python("-m", "bench.cuda", "--smoke", "--out", str(tmp_path))
    assert done.returncode == 0, done.stdout + done.stderr
    info = json.loads((tmp_path / "cuda_emulate.json").read_text())
    names = {r["case"] for r in info["cases"]}
    assert names == {"MatMul", "Mul,Add,Tanh,Mul", "Softmax", "LayerNormalization", "Conv 3x3", "resnet_tiny",
                     "bert_style_1layer"}
    assert {r["dtype"] for r in info["cases"] if r["case"] == "MatMul"} == {"float32", "float16"}
    assert [r["check"] for r in info["cases"]] == ["ok"] * len(info["cases"])
    assert all(r["ref"] is not None for r in info["cases"])  # every case was timed against its reference
    assert info["emulated"] and "check" in (tmp_path / "cuda_emulate.md").read_text()


@pytest.mark.parametrize("command", [
    [NO_CUPY + "from bench.cuda import main; sys.exit(main(['--target', 'cuda']))"],
    [NO_CUPY + "import runpy; sys.argv = ['perf', '--target', 'cuda']; runpy.run_module('bench.perf', "
     "run_name='__main__')"],
], ids=["bench.cuda", "bench.perf"])
def test_without_cupy_one_line_and_nonzero_status(command):
    done = run_python("-c", *command)
    assert done.returncode == 2
    assert "Traceback" not in done.stderr and done.stdout == ""
    (line,) = done.stderr.strip().splitlines()
    assert "cupy is not installed" in line and '--target "cuda -emulate"' in line


def fake_cupy(count=1, props=None, attributes=None) -> ModuleType:
    """A stand-in for cupy: a device with given properties, and events on a clock the timed function advances."""
    clock = SimpleNamespace(now=0.0)

    class Event:
        def record(self):
            self.t = clock.now

        def synchronize(self):
            pass

    def device_count():
        if isinstance(count, Exception):
            raise count
        return count

    cupy = ModuleType("cupy")
    cupy.clock = clock
    cupy.cuda = SimpleNamespace(
        Device=lambda: SimpleNamespace(id=0, compute_capability="90"), Event=Event,
        get_elapsed_time=lambda start, end: (end.t - start.t) * 1e3,
        runtime=SimpleNamespace(getDeviceCount=device_count, getDeviceProperties=lambda i: dict(props or {}),
                                deviceGetAttribute=lambda attr, i: (attributes or {})[attr],
                                runtimeGetVersion=lambda: 12040))
    cupy.__version__ = "13.3.0"
    cupy.asarray, cupy.asnumpy = np.asarray, np.asarray
    return cupy


@pytest.mark.parametrize("count,message", [(RuntimeError("cudaErrorNoDevice: no CUDA-capable device"),
                                            "no CUDA device is usable (cudaErrorNoDevice"),
                                           (0, "no CUDA device was found")])
def test_without_a_device_the_reason_is_given(bench, monkeypatch, count, message):
    monkeypatch.setitem(sys.modules, "cupy", fake_cupy(count))
    assert bench.runtime.missing_gpu().startswith(message)
    assert bench.cuda.main(["--target", "cuda"]) == 2


H100 = {"name": b"NVIDIA H100 80GB HBM3", "memoryClockRate": 2619000, "memoryBusWidth": 5120,
        "totalGlobalMem": 80 << 30}


def test_gpu_runtime_takes_the_device_arch_and_peak_bandwidth(bench, monkeypatch):
    monkeypatch.setitem(sys.modules, "cupy", fake_cupy(props=H100))
    runtime = bench.cuda.runtime_for("cuda")
    assert runtime.target == "cuda -arch=sm_90" and runtime.device["name"] == "NVIDIA H100 80GB HBM3"
    assert runtime.device["peak_gbs"] == pytest.approx(3352.32)
    assert bench.cuda.runtime_for("cuda -arch=sm_80").target == "cuda -arch=sm_80"  # a given -arch is kept


def test_gpu_runtime_reads_attributes_where_cuda13_dropped_the_properties(bench, monkeypatch):
    props = {k: v for k, v in H100.items() if k != "memoryClockRate"}
    monkeypatch.setitem(sys.modules, "cupy", fake_cupy(props=props, attributes={36: 2619000}))
    assert bench.runtime.GpuRuntime("cuda").device["peak_gbs"] == pytest.approx(3352.32)
    monkeypatch.setitem(sys.modules, "cupy", fake_cupy(props=props, attributes={}))
    assert bench.runtime.GpuRuntime("cuda").device["peak_gbs"] is None  # unknown: "% peak" shows "-"


def test_gpu_runtime_times_a_batch_between_events(bench, monkeypatch):
    cupy = fake_cupy(props=H100)
    monkeypatch.setitem(sys.modules, "cupy", cupy)
    runtime = bench.runtime.GpuRuntime("cuda")

    def call():
        cupy.clock.now += 0.002
    assert runtime.elapsed(call, 5) == pytest.approx(0.002)


def test_measure_alternates_contenders_and_sizes_batches(bench):
    """Batches are sized from one timed call to last sample_s; rounds alternate between the contenders."""
    cost = {"a": 0.001, "b": 0.004}
    log: list[tuple[str, int]] = []

    def elapsed(fn, reps):
        log.append((fn(), reps))
        return cost[log[-1][0]]
    a, b = bench.cuda.measure([lambda: "a", lambda: "b"], elapsed, rounds=3, sample_s=0.02, warmup=0)
    assert log[2:] == [("a", 20), ("b", 5)] * 3
    assert (a["median"], a["calls_per_batch"], b["min"], b["batches"]) == (0.001, 20, 0.004, 3)


@settings(max_examples=15)
@given(shape=st.sampled_from([(1,), (7,), (3, 13), (1, 31, 2)]), dtype=st.sampled_from(["float32", "float16"]),
       seed=st.integers(0, 2 ** 16))
def test_check_accepts_rounding_and_flags_real_errors(bench, shape, dtype, seed):
    rng = np.random.default_rng(seed)
    want = rng.standard_normal(shape).astype(dtype)
    tol = bench.cuda.TOLERANCE[dtype]
    scale = max(float(np.abs(want.astype(np.float64)).max()), 1e-6)
    assert bench.cuda.check([want.copy()], [want], dtype) == "ok"
    off = want.astype(np.float64)
    off.flat[seed % off.size] += 3 * tol * scale
    assert bench.cuda.check([off.astype(np.float32)], [want], dtype).startswith("MISMATCH (error")
    nan = want.copy()
    nan.flat[0] = np.nan
    assert bench.cuda.check([nan], [want], dtype).startswith("MISMATCH")
    assert bench.cuda.check([want.reshape(-1, 1)], [want], dtype).startswith("MISMATCH (shape")


def test_verdicts_and_missing_peers(bench):
    cases = importlib.import_module("bench.cuda_cases")
    case = SimpleNamespace(aim=cases.Aim("ratio", 0.8))
    assert bench.cuda.verdict(case, {"x_ref": 0.85}, emulated=False) == "met"
    assert bench.cuda.verdict(case, {"x_ref": 0.5}, emulated=False) == "missed"
    assert bench.cuda.verdict(case, {"x_ref": 0.5}, emulated=True) == "-"
    peak = SimpleNamespace(aim=cases.Aim("peak", 0.85))
    assert bench.cuda.verdict(peak, {"pct_peak": None}, emulated=False) == "n/a"
    ort = SimpleNamespace(get_available_providers=lambda: ["CPUExecutionProvider"])
    assert bench.runtime.peer_unavailable(ort, "CUDAExecutionProvider") == "n/a (no CUDAExecutionProvider)"
    assert bench.runtime.peer_unavailable(None, "CUDAExecutionProvider") == "n/a (onnxruntime not installed)"
    assert bench.runtime.peer_unavailable(ort, "CPUExecutionProvider") is None


def test_bad_targets_are_one_line_errors(bench, capsys):
    assert bench.cuda.main(["--target", "llvm"]) == 2
    assert bench.cuda.main(["--target", "cuda -bogus"]) == 2
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 2 and "must be a cuda target" in lines[0] and "unknown option -bogus" in lines[1]


def test_a_failing_case_is_reported_and_the_run_goes_on(bench):
    """A case whose stage raises becomes a FAILED row (with the stage and the reason) that the table still prints."""
    cases = importlib.import_module("bench.cuda_cases")
    good = cases.softmax_rows(3, 7)

    def broken(xp):
        def run(x):
            raise RuntimeError("reference exploded\nsecond line")
        return run
    bad = cases.GpuCase("Softmax", "3x7", "float32", good.model, good.feeds, good.work, "GB/s", broken, "cupy")
    runtime = bench.runtime.EmulatedRuntime("cuda -emulate")
    timing = {"rounds": 1, "sample_s": 0.0, "warmup": 0}
    rows = [bench.cuda.run_case(c, runtime, timing) for c in (bad, good)]
    assert rows[0]["check"] == "FAILED (reference: RuntimeError: reference exploded)" and rows[0]["ember"] is None
    assert rows[1]["check"] == "ok"
    assert "FAILED (reference" in bench.cuda.result_table(rows)
