"""`ember.export(..., target="ascend")` and `ember compile --target ascend -o dir/`: a CANN kernel-invocation
package whose kernel sources are exactly the ones the emulator ran."""
from __future__ import annotations

import json
import shutil

import numpy as np
import pytest

import ember
from ember.codegen.ascend import AscendError


def _kernel(target: str):
    A = ember.placeholder((6, 50), "float32", name="A")
    k = ember.reduce_axis(50, "k")
    S = ember.compute((6,), lambda i: ember.sum(ember.exp(A[i, k]), k), name="S")
    return ember.build(S, [A, S], target=target, name="rowsum")


def test_export_kernel_package(tmp_path):
    f = _kernel("ascend")
    out = ember.export(f, tmp_path / "pkg", target="ascend")
    src = (out / "kernels" / "rowsum.cpp").read_text()
    assert src == f.source("ascend")
    host = (out / "host" / "rowsum_main.cpp").read_text()
    assert "#ifdef ASCENDC_CPU_DEBUG" in host and "ICPU_RUN_KF(rowsum_0" in host and "rowsum_0<<<" in host
    assert "EmberTiling_rowsum_0 tiling_rowsum_0{" in host
    cmake = (out / "CMakeLists.txt").read_text()
    assert "RUN_MODE" in cmake and "tikicpulib" in cmake and "ascendc_library" in cmake
    assert "cmake -B build" in (out / "README.md").read_text()
    plan = json.loads((out / "plans" / "rowsum.json").read_text())
    assert plan["kernels"][0]["family"] == "row_reduce"
    from ember.codegen.ascend import plan_table
    table = plan_table(f)
    assert "rowsum_0" in table and "row_reduce" in table and "/ 188416" in table


def test_export_refuses_other_targets(tmp_path):
    X = ember.placeholder((4,), "float32", name="X")
    Y = ember.compute((4,), lambda i: X[i] + 1.0, name="Y")
    f = ember.build(Y, [X, Y], target="llvm")
    with pytest.raises(AscendError, match="compile the model or kernel with an ascend target"):
        ember.export(f, tmp_path / "x", target="ascend")
    with pytest.raises(AscendError, match="not an ascend target"):
        ember.export(f, tmp_path / "x", target="llvm")


def test_exported_model_sources_are_the_emulated_ones(tmp_path):
    if shutil.which("g++") is None:
        pytest.skip("g++ is not installed: the AscendC emulator needs it")
    pytest.importorskip("ember.codegen.ascend.emulate", reason="the AscendC emulator is not available")
    from onnx import TensorProto, helper
    N = helper.make_node
    g = helper.make_graph([N("Softmax", ["x"], ["s"], axis=-1), N("Relu", ["s"], ["y"])], "m",
                          [helper.make_tensor_value_info("x", TensorProto.FLOAT, [3, 9])],
                          [helper.make_tensor_value_info("y", TensorProto.FLOAT, [3, 9])])
    model = helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)])
    compiled = ember.compile(model, target="ascend -emulate")
    x = np.random.default_rng(0).standard_normal((3, 9)).astype("f4")
    e = np.exp(x - x.max(1, keepdims=True))
    np.testing.assert_allclose(compiled(x)[0], e / e.sum(1, keepdims=True), rtol=1e-5, atol=1e-6)
    out = ember.export(compiled, tmp_path / "model", target="ascend")
    steps = json.loads((out / "model.json").read_text())
    assert len(steps) == len(compiled.steps)
    for step, s in zip(steps, compiled.steps):
        assert (out / "kernels" / f"{step['kernel']}.cpp").read_text() == s.kernel.source("ascend")


def test_cli_compile_target_ascend_writes_a_package(tmp_path):
    from onnx import TensorProto, helper, save
    from ember.runtime.cli import main
    g = helper.make_graph([helper.make_node("Sigmoid", ["x"], ["y"])], "m",
                          [helper.make_tensor_value_info("x", TensorProto.FLOAT, [40])],
                          [helper.make_tensor_value_info("y", TensorProto.FLOAT, [40])])
    path = tmp_path / "m.onnx"
    save(helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)]), str(path))
    assert main(["compile", str(path), "--target", "ascend", "-o", str(tmp_path / "pkg")]) == 0
    assert (tmp_path / "pkg" / "CMakeLists.txt").is_file()
    assert "AscendC::" in next((tmp_path / "pkg" / "kernels").glob("*.cpp")).read_text()
