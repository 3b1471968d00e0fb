"""A table of each AscendC launch's plan (tiling, UB use against the budget, blocks, bytes moved per core), so a
CANN user can judge a plan without hardware; bench/ and the CLI can print it."""
from __future__ import annotations

import json
from typing import Any

from ...runtime.text import text_table

COLUMNS = ("ember kernel", "AscendC kernel", "family", "blocks", "former x units", "tail units", "tile",
           "UB bytes / budget", "bytes per core")


def plan_rows(obj: Any) -> list[tuple[str, ...]]:
    """One row per AscendC launch of a Kernel (ember.build) or of every kernel of a CompiledModel."""
    from .export import _kernels
    kernels, _ = _kernels(obj)
    rows, seen = [], set()
    for k in kernels:
        if k.key in seen:
            continue
        seen.add(k.key)
        for launch in json.loads(k.source("ascend-plan"))["kernels"]:
            p = launch["plan"]
            ub = f"{p['ub_bytes']} / {p['ub_budget']}" if "ub_bytes" in p else "- (scalar/cube)"
            rows.append((k.name, launch["name"], launch["family"], str(launch["blocks"]),
                         f"{p.get('former_num', 0)} x {p.get('former', '-')}", str(p.get("tail", "-")),
                         str(p.get("tile", p.get("rows_per_unit", "-"))), ub, str(p.get("bytes_per_core", "-"))))
    return rows


def plan_table(obj: Any) -> str:
    return text_table(COLUMNS, plan_rows(obj), rule=False)
