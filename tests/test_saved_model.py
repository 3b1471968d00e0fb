"""Saved models (`CompiledModel.save` / `ember.load`) and the model-level compile cache.

The model uses a test-only op in a private domain, so these tests do not depend on which ONNX ops exist yet."""
from __future__ import annotations

import io
import json
import os
import subprocess
import sys
import warnings
import zipfile
from pathlib import Path

import numpy as np
import pytest
from onnx import TensorProto, helper

import ember
from ember.graph import register
from ember.runtime.cache import CacheWarning, default_cache, reset_default_cache
from ember.runtime.saved import SavedModelError, loads

W = np.array([1.0, -2.0, 0.5], np.float32)


@register("SavedAddRelu", domain="test.ember", kind="elementwise")
def _add_relu(ctx, a, b):
    """relu(a + b), b broadcast along a's trailing dimensions."""
    return ember.compute(a.shape, lambda *i: ember.maximum(a[i] + b[i[len(i) - len(b.shape):]], 0.0),
                         name=ctx.name())


def make_model(rows="N"):
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [rows, 3])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, [rows, 3])
    w = helper.make_tensor("w", TensorProto.FLOAT, [3], W.tolist())
    nodes = [helper.make_node("SavedAddRelu", ["x", "w"], ["h"], domain="test.ember"),
             helper.make_node("SavedAddRelu", ["h", "x"], ["y"], domain="test.ember")]
    graph = helper.make_graph(nodes, "tiny", [x], [y], [w])
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17), helper.make_opsetid("test.ember", 1)])


def reference(x):
    return np.maximum(np.maximum(x + W, 0) + x, 0)


@pytest.fixture
def fresh_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("EMBER_CACHE_DIR", str(tmp_path / "cache"))
    reset_default_cache()
    yield default_cache()
    reset_default_cache()


@pytest.fixture(scope="module")
def saved(tmp_path_factory):
    path = tmp_path_factory.mktemp("saved") / "tiny.ember"
    ember.compile(make_model()).save(path)
    return path


def rewrite(src: Path, dst: Path, change) -> Path:
    """Copy a saved model, passing its manifest through `change`."""
    with zipfile.ZipFile(src) as zin, zipfile.ZipFile(dst, "w") as zout:
        for item in zin.infolist():
            data = zin.read(item)
            if item.filename == "manifest.json":
                manifest = json.loads(data)
                change(manifest)
                data = json.dumps(manifest).encode()
            zout.writestr(item, data)
    return dst


def test_round_trip_keeps_shapes_and_results(saved):
    model = ember.load(saved)
    x = np.random.default_rng(0).standard_normal((5, 3)).astype(np.float32)
    np.testing.assert_allclose(model(x)[0], reference(x), rtol=1e-6)
    assert str(model.inputs[0]) == "x: float32[N, 3]"  # the symbolic size survives by name
    assert model.steps[0].kernel.source("llvm").startswith("; ModuleID")
    with pytest.raises(ValueError, match="saved model"):
        model.steps[0].kernel.source("loops")


def test_manifest_describes_the_model(saved):
    with zipfile.ZipFile(saved) as zf:
        manifest = json.loads(zf.read("manifest.json"))
        names = set(zf.namelist())
    assert manifest["format"] == "ember-saved-model" and manifest["ember_version"] == ember.__version__
    assert manifest["target"] == ember.parse_target("llvm").canonical()
    assert manifest["inputs"] == [{"name": "x", "dtype": "float32", "shape": [{"var": "N"}, 3]}]
    assert [s["label"] for s in manifest["steps"]] and "memory_plan" in manifest
    assert {"kernels/0.bin", "consts/0.npy"} <= names


def test_load_in_fresh_process_without_onnx_or_llvm_codegen(saved, tmp_path):
    script = f"""
import sys, numpy as np, ember
from ember.codegen.llvm import LLVMBackend
def refuse(*args): raise AssertionError("load must not compile")
LLVMBackend.compile = refuse
model = ember.load({str(saved)!r})
x = np.ones((2, 3), np.float32)
print(model(x)[0].tolist())
assert "onnx" not in sys.modules, "ember.load imported onnx"
assert ember.runtime.stats()["compiles"] == 0
"""
    env = {**os.environ, "EMBER_CACHE_DIR": str(tmp_path / "empty-cache")}
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, env=env, timeout=60)
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout) == reference(np.ones((2, 3), np.float32)).tolist()


@pytest.mark.parametrize("change, message", [
    (lambda m: m.update(target=m["target"].replace("-mtriple=", "-mtriple=aarch64-x-")), "target triple"),
    (lambda m: m.update(target=m["target"].replace("-mattr=", "-mattr=+avx512fp16,")), "avx512fp16"),
    (lambda m: m.update(format_version=99), "format 99.*upgrade ember"),
    (lambda m: m.update(ember_version="9.0.0"), "ember 9.0.0"),
    (lambda m: m["steps"][0].update(args=[["temp", 7]]), "corrupt"),
])
def test_incompatible_or_inconsistent_files_are_refused(saved, tmp_path, change, message):
    if "mattr=+avx512fp16" in message and "+avx512fp16" in ember.parse_target("llvm").get("mattr"):
        pytest.skip("this CPU has the feature used to fake another machine")
    with pytest.raises(SavedModelError, match=message):
        ember.load(rewrite(saved, tmp_path / "other.ember", change))


def test_damaged_files_are_refused_clearly(saved, tmp_path):
    data = saved.read_bytes()
    with pytest.raises(SavedModelError, match="truncated or corrupt"):
        loads(data[: len(data) // 2], "half.ember")
    flipped = bytearray(data)
    flipped[len(data) // 3] ^= 0xFF  # inside the stored kernel: the entry's CRC no longer matches
    with pytest.raises(SavedModelError, match="flipped.ember is (truncated or )?corrupt"):
        loads(bytes(flipped), "flipped.ember")
    with pytest.raises(SavedModelError, match="not an ember saved model"):
        buf = io.BytesIO()
        with zipfile.ZipFile(buf, "w") as zf:
            zf.writestr("hello.txt", "hi")
        loads(buf.getvalue(), "other.zip")
    with pytest.raises(FileNotFoundError, match="no saved ember model"):
        ember.load(tmp_path / "missing.ember")


def test_model_cache_hits_skip_compilation(fresh_cache):
    calls = []
    first = ember.compile(make_model(), progress=lambda k, n, label: calls.append(label))
    assert calls and fresh_cache.stats.writes >= 1  # the whole model (the kernel may be loaded already)
    again = ember.compile(make_model().SerializeToString(), progress=lambda k, n, label: calls.append(label))
    assert len(calls) == 1, "a cache hit must not build kernels"
    x = np.arange(6, dtype=np.float32).reshape(2, 3)
    np.testing.assert_array_equal(first(x)[0], again(x)[0])


def test_model_cache_rebuilds_a_bad_entry(fresh_cache):
    from ember.frontend.api import model_key
    model = make_model()
    key = model_key(model, ember.parse_target("llvm"))
    fresh_cache.put(key, b"not a saved model")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        compiled = ember.compile(model)
    assert any(issubclass(w.category, CacheWarning) for w in caught)
    assert loads(fresh_cache.get(key)).name == compiled.name  # replaced by a good entry


def test_model_cache_respects_disable(tmp_path, monkeypatch):
    monkeypatch.setenv("EMBER_CACHE_DIR", str(tmp_path / "off"))
    monkeypatch.setenv("EMBER_CACHE", "0")
    reset_default_cache()
    try:
        ember.compile(make_model(4))
        assert default_cache().stats.writes == 0 and not (tmp_path / "off").exists()
    finally:
        reset_default_cache()
