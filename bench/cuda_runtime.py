"""Where `bench.cuda` runs its cases: a real GPU through cupy, or the CPU emulator with numpy.

Both runtimes give the harness the same handful of operations (move arrays, time a batch of calls, describe the
device, build an onnxruntime peer), so every line of the harness except the cupy calls below runs in the emulated
smoke test. On the GPU a batch of calls is timed between two cupy events on the current stream, the stream ember's
kernels and cupy's own run on; onnxruntime returns only once its own stream is done, so the events cover its work
too."""
from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import numpy as np
import onnx

CUDA_EP = "CUDAExecutionProvider"
CPU_EP = "CPUExecutionProvider"
MEMORY_CLOCK_ATTR, BUS_WIDTH_ATTR = 36, 37  # cudaDevAttrMemoryClockRate (kHz), cudaDevAttrGlobalMemoryBusWidth


def missing_gpu() -> "str | None":
    """What keeps the benchmark off a GPU here (cupy, a driver, a device), or None when one is usable."""
    try:
        import cupy  # noqa: PLC0415 (optional dependency)
    except ImportError:
        return ("cupy is not installed (pip install -e '.[cuda]', or '.[cuda13]' for CUDA 13 drivers, on a machine "
                "with an NVIDIA GPU)")
    try:
        count = cupy.cuda.runtime.getDeviceCount()
    except Exception as err:  # cupy raises its own CUDARuntimeError without a driver
        return f"no CUDA device is usable ({str(err).splitlines()[0] if str(err) else type(err).__name__})"
    return None if count > 0 else "no CUDA device was found"


def peak_gbs(memory_clock_khz: float, bus_width_bits: float) -> "float | None":
    """Peak device memory bandwidth in GB/s: double data rate x bus width in bytes; None when unknown (0)."""
    if not memory_clock_khz or not bus_width_bits:
        return None
    return memory_clock_khz * 1e3 * 2 * bus_width_bits / 8 / 1e9


def ort_module() -> Any:
    try:
        import onnxruntime  # noqa: PLC0415 (optional: onnxruntime-gpu on GPU machines)
    except ImportError:
        return None
    return onnxruntime


def ort_session(ort: Any, model: onnx.ModelProto, providers: list) -> Any:
    opts = ort.SessionOptions()
    opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    opts.log_severity_level = 3
    return ort.InferenceSession(model.SerializeToString(), opts, providers=providers)


def peer_unavailable(ort: Any, wanted: str) -> "str | None":
    """Why onnxruntime cannot be the timed peer with execution provider `wanted`, or None when it can."""
    if ort is None:
        return "n/a (onnxruntime not installed)"
    if wanted not in ort.get_available_providers():
        return f"n/a (no {wanted})"
    return None


class EmulatedRuntime:
    """The CPU emulator: host arrays, numpy references, wall-clock batches (meaningless as performance)."""

    emulated = True
    xp = np
    ort_provider = CPU_EP

    def __init__(self, target: str) -> None:
        self.target = target
        self.device = {"name": "CPU emulator (timings meaningless)", "peak_gbs": None}

    @staticmethod
    def upload(a: np.ndarray) -> np.ndarray:
        return a

    @staticmethod
    def download(a: Any) -> np.ndarray:
        return np.asarray(a)

    @staticmethod
    def elapsed(fn: Callable[[], object], reps: int) -> float:
        t0 = time.perf_counter()
        for _ in range(reps):
            fn()
        return (time.perf_counter() - t0) / reps

    @staticmethod
    def ort_peer(ort: Any, model: onnx.ModelProto, inputs: dict[str, Any], outputs: list[np.ndarray]
                 ) -> Callable[[], object]:
        sess = ort_session(ort, model, [CPU_EP])
        return lambda: sess.run(None, inputs)


class GpuRuntime:
    """The current CUDA device through cupy; the ember target gets the device's own -arch unless one is given."""

    emulated = False
    ort_provider = CUDA_EP

    def __init__(self, target: str) -> None:
        import cupy  # noqa: PLC0415 (checked by missing_gpu)
        self.cupy = self.xp = cupy
        dev = cupy.cuda.Device()
        self.device_id = dev.id
        props = cupy.cuda.runtime.getDeviceProperties(dev.id)
        arch = f"sm_{dev.compute_capability}"
        self.target = target if "-arch" in target else f"{target} -arch={arch}"
        self.device = {"name": props["name"].decode() if isinstance(props["name"], bytes) else str(props["name"]),
                       "arch": arch, "memory_gib": props.get("totalGlobalMem", 0) / 2 ** 30,
                       "cupy": cupy.__version__, "cuda_runtime": cupy.cuda.runtime.runtimeGetVersion(),
                       "peak_gbs": peak_gbs(self._attribute(props, "memoryClockRate", MEMORY_CLOCK_ATTR),
                                            self._attribute(props, "memoryBusWidth", BUS_WIDTH_ATTR))}

    def _attribute(self, props: dict, key: str, attr: int) -> int:
        """A property from getDeviceProperties, or from cudaDeviceGetAttribute where CUDA 13 dropped it."""
        if props.get(key):
            return int(props[key])
        try:
            return int(self.cupy.cuda.runtime.deviceGetAttribute(attr, self.device_id))
        except Exception:  # an attribute this driver does not know: the peak stays unknown
            return 0

    def upload(self, a: np.ndarray) -> Any:
        return self.cupy.asarray(a)

    def download(self, a: Any) -> np.ndarray:
        return self.cupy.asnumpy(a)

    def elapsed(self, fn: Callable[[], object], reps: int) -> float:
        start, end = self.cupy.cuda.Event(), self.cupy.cuda.Event()
        start.record()
        for _ in range(reps):
            fn()
        end.record()
        end.synchronize()
        return self.cupy.cuda.get_elapsed_time(start, end) / 1e3 / reps

    def ort_peer(self, ort: Any, model: onnx.ModelProto, inputs: dict[str, Any], outputs: list[np.ndarray]
                 ) -> "Callable[[], object] | str":
        """onnxruntime on the CUDA provider with inputs and outputs bound to device buffers (no host copies);
        TF32 off, as in ember and cupy.matmul. A string when the provider did not load (missing cuDNN...)."""
        sess = ort_session(ort, model, [(CUDA_EP, {"device_id": str(self.device_id), "use_tf32": "0"}), CPU_EP])
        if CUDA_EP not in sess.get_providers():
            return f"n/a ({CUDA_EP} failed to load)"
        binding = sess.io_binding()
        for name, arr in inputs.items():
            binding.bind_input(name, "cuda", self.device_id, arr.dtype.type, arr.shape, int(arr.data.ptr))
        results = [self.cupy.empty(o.shape, o.dtype) for o in outputs]
        for spec, arr in zip(sess.get_outputs(), results):
            binding.bind_output(spec.name, "cuda", self.device_id, arr.dtype.type, arr.shape, int(arr.data.ptr))

        def run() -> list:
            sess.run_with_iobinding(binding)
            return results
        return run
