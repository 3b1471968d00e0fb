"""Plain-text tables for what ember prints (profiles, tuning summaries, AscendC plans): one layout everywhere."""
from __future__ import annotations

from typing import Sequence


def text_table(header: Sequence[str], rows: Sequence[Sequence[str]], rule: bool = True) -> str:
    """Left-aligned columns two spaces apart, each as wide as its widest cell; a dashed rule under the header."""
    table = [list(header), *(list(r) for r in rows)]
    widths = [max(len(r[i]) for r in table) for i in range(len(header))]
    lines = ["  ".join(c.ljust(w) for c, w in zip(r, widths)).rstrip() for r in table]
    if rule:
        lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)
