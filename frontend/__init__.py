"""Frontends: what turns user models into the graph IR. `onnx` for ONNX models, `jit` for traced functions."""
