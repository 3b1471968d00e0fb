"""The `ember` command line: compile, run, info and their error handling (one line, non-zero exit)."""
from __future__ import annotations

import os
import subprocess
import sys

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper

import ember
from ember.graph import register
from ember.runtime import cli

W = np.array([0.5, -1.0], np.float32)


@register("CliAddRelu", domain="test.ember", kind="elementwise")
def _add_relu(ctx, a, b):
    """relu(a + b), b broadcast along a's trailing dimensions."""
    return ember.compute(a.shape, lambda *i: ember.maximum(a[i] + b[i[len(i) - len(b.shape):]], 0.0),
                         name=ctx.name())


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    folder = tmp_path_factory.mktemp("cli")
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", 2])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, ["batch", 2])
    nodes = [helper.make_node("CliAddRelu", ["x", "w"], ["y"], domain="test.ember"),
             helper.make_node("Erf", ["x"], ["unused"])]
    graph = helper.make_graph(nodes[:1], "clitiny", [x], [y], [helper.make_tensor("w", TensorProto.FLOAT, [2], W)])
    opsets = [helper.make_opsetid("", 17), helper.make_opsetid("test.ember", 1)]
    onnx.save(helper.make_model(graph, opset_imports=opsets), folder / "tiny.onnx")
    odd = helper.make_graph(nodes, "odd", [x], [y], [helper.make_tensor("w", TensorProto.FLOAT, [2], W)])
    onnx.save(helper.make_model(odd, opset_imports=opsets), folder / "odd.onnx")
    np.save(folder / "x.npy", np.array([[1.0, 2.0], [-3.0, 0.25]], np.float32))
    return folder


def run(capsys, *argv):
    code = cli.main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return code, out, err


def test_compile_then_run_saved_model(files, capsys, monkeypatch):
    monkeypatch.setattr(cli, "PROGRESS_AFTER_S", 0.0)
    code, out, err = run(capsys, "compile", files / "tiny.onnx", "-o", files / "tiny.ember")
    assert code == 0 and "wrote" in out and (files / "tiny.ember").is_file()
    assert "[1/1] compiling" in err
    code, out, _ = run(capsys, "run", files / "tiny.ember", "--input", f"x={files / 'x.npy'}")
    assert code == 0 and out.startswith("y: float32[2, 2] min=0 max=1.5")


def test_run_onnx_saves_outputs(files, capsys, tmp_path):
    code, out, _ = run(capsys, "run", files / "tiny.onnx", "--input", f"x={files / 'x.npy'}", "--output-dir", tmp_path)
    assert code == 0 and "-> " in out
    x = np.load(files / "x.npy")
    np.testing.assert_array_equal(np.load(tmp_path / "y.npy"), np.maximum(x + W, 0))


def test_info_lists_ops_and_unsupported_ones(files, capsys):
    code, out, _ = run(capsys, "info", files / "odd.onnx")
    assert code == 0
    assert "x: float[batch, 2]" in out and "test.ember.CliAddRelu: 1" in out and "Erf: 1" in out
    supported = "Erf" in ember.graph.supported_ops()
    assert ("unsupported ops: none" in out) == supported
    assert supported or "unsupported ops: Erf (opset 17)" in out


def test_info_on_saved_model(files, capsys):
    ember.compile(str(files / "tiny.onnx")).save(files / "info.ember")
    code, out, _ = run(capsys, "info", files / "info.ember")
    assert code == 0 and "saved model: clitiny" in out and "x: float32[batch, 2]" in out


@pytest.mark.parametrize("command", ["compile", "run", "info", "cache"])
def test_help(command, capsys):
    code, out, _ = run(capsys, command, "--help")
    assert code == 0 and out.startswith(f"usage: ember {command}")


@pytest.mark.parametrize("argv, message", [
    (["run", "missing.onnx"], "no model file at missing.onnx"),
    (["run", "{tiny}", "--input", "x"], "expected NAME=FILE.npy"),
    (["run", "{tiny}", "--input", "nope={x}"], "no input named 'nope'"),
    (["run", "{tiny}", "--input", "x={tiny}"], "cannot read"),
    (["compile", "{x}"], "not a valid ONNX model"),
    (["compile", "{tiny}", "--target", "llvm -opt=9"], "opt"),
    (["compile"], "the following arguments are required"),
])
def test_errors_are_one_line(files, capsys, argv, message):
    argv = [a.format(tiny=files / "tiny.onnx", x=files / "x.npy") for a in argv]
    code, _, err = run(capsys, *argv)
    assert code == 2 and message in err
    assert err.count("\n") == 1 and "Traceback" not in err


def test_entry_point_has_no_traceback(tmp_path):
    env = {**os.environ, "EMBER_CACHE_DIR": str(tmp_path)}
    done = subprocess.run([sys.executable, "-m", "ember", "info", str(tmp_path / "none.onnx")], capture_output=True,
                          text=True, env=env, timeout=60)
    assert done.returncode == 2 and done.stderr.strip() == f"ember: error: no model file at {tmp_path / 'none.onnx'}"


def test_run_profile_times_every_kernel(files, capsys):
    """A model with a symbolic batch (the per-call path) profiled from the command line: a table of its kernels
    naming their graph nodes, instead of the outputs."""
    code, out, _ = run(capsys, "run", files / "tiny.onnx", "--input", f"x={files / 'x.npy'}", "--profile", "3")
    assert code == 0 and "median ms" in out and "float32" not in out and "CliAddRelu_0" in out
    assert "1 kernels" in out and "(median of 3)" in out
