"""The nine `light_*` models bundled with the onnx package (AlexNet ... ZFNet-512, 224x224 inputs, weights built
by ConstantOfShape) must reproduce the expected outputs stored beside them, with the inputs the official runner
feeds them (arange(n) / n in each float input)."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import numpy_helper

import ember

LIGHT_DIR = Path(onnx.__file__).parent / "backend" / "test" / "data" / "light"
MODELS = ["bvlc_alexnet", "densenet121", "inception_v1", "inception_v2", "resnet50", "shufflenet", "squeezenet",
          "vgg19", "zfnet512"]


def runner_inputs(model: onnx.ModelProto) -> dict[str, np.ndarray]:
    """The inputs onnx's backend runner generates for these models (non-random dummy data)."""
    inits = {i.name for i in model.graph.initializer}
    feeds = {}
    for vi in model.graph.input:
        if vi.name in inits:
            continue
        shape = tuple(d.dim_value if d.HasField("dim_value") else 1 for d in vi.type.tensor_type.shape.dim)
        n = int(np.prod(shape))
        feeds[vi.name] = (np.arange(n).reshape(shape) / n).astype(np.float32)
    return feeds


@pytest.mark.slow
@pytest.mark.parametrize("name", MODELS)
def test_light_model(name):
    path = LIGHT_DIR / f"light_{name}.onnx"
    model = onnx.load(str(path))
    expected = numpy_helper.to_array(onnx.load_tensor(str(LIGHT_DIR / f"light_{name}_output_0.pb")))
    compiled = ember.compile(model)
    [out] = compiled.run(runner_inputs(model)).values()
    np.testing.assert_allclose(out, expected, rtol=1e-3, atol=1e-7)
