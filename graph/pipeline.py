"""The graph compiler, start to end: this table is the table of contents. Each stage can be dumped with
EMBER_DUMP_DIR (one text file per stage)."""
from __future__ import annotations

import os
from pathlib import Path
from typing import Callable

from .ir import Graph
from .passes import (check_outputs, check_supported, eliminate_common_subexpressions, eliminate_dead_code,
                     fold_constants, infer_shapes)
from .rewrites import block_conv_weights, fold_batchnorm, matrix_conv_weights, pretranspose_gemm_weights

GRAPH_PASSES: list[tuple[str, Callable[[Graph], Graph]]] = [
    ("check_supported", check_supported),            # every op known at its opset, or one error listing all
    ("infer_shapes", infer_shapes),                  # dtypes and shapes from the ops' definitions, folding
                                                     # shape arithmetic and constant weights on the way
    ("check_outputs", check_outputs),                # declared output dtypes and shapes match the computed ones
    ("eliminate_dead_code", eliminate_dead_code),
    ("eliminate_common_subexpressions", eliminate_common_subexpressions),
    ("fold_batchnorm", fold_batchnorm),              # BatchNormalization into the preceding Conv
    ("pretranspose_gemm_weights", pretranspose_gemm_weights),  # constant Gemm B^T laid out for the matmul
    ("fold_constants", fold_constants),              # what the rewrites made constant
    ("eliminate_dead_code", eliminate_dead_code),
]


# Layout choices that only pay off on one target's kernels, run after the passes above.
TARGET_PASSES: dict[str, list[tuple[str, Callable[[Graph], Graph]]]] = {
    "llvm": [("block_conv_weights", block_conv_weights)],  # constant Conv weights in blocks of output channels
    "cuda": [("matrix_conv_weights", matrix_conv_weights)],  # constant Conv weights as the implicit GEMM's matrix
}


def optimize(g: Graph, target: str = "") -> Graph:
    """The graph passes, then those of the target kind (`"llvm"`, ...) when one is given."""
    dump = os.environ.get("EMBER_DUMP_DIR")
    for k, (name, run) in enumerate(GRAPH_PASSES + TARGET_PASSES.get(target, [])):
        g = run(g)
        if dump:
            folder = Path(dump) / f"graph-{g.name}"
            folder.mkdir(parents=True, exist_ok=True)
            (folder / f"{k:02d}-{name}.txt").write_text(str(g))
    return g
