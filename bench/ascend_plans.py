"""The AscendC plan of every CPU benchmark kernel (bench/perf_kernels.py): per launch the family, the tiling
chosen, UB use against its budget, the number of blocks and the bytes moved per core, so a CANN user can judge the
plans without an NPU. Nothing is timed (no NPU here); the kernels are generated, not run.

    python -m bench.ascend_plans [--soc ascend910b|ascend310p] [--cores N] [--quick]
"""
from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import ember
from ember.codegen.ascend import AscendError, plan_rows, plan_table

from .perf_kernels import kernel_cases

RESULTS = Path(__file__).resolve().parent / "results" / "ascend_plans.json"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--soc", default="ascend910b", choices=("ascend910b", "ascend310p"))
    parser.add_argument("--cores", type=int, default=None, help="cores to plan for (default: the SoC's)")
    parser.add_argument("--quick", action="store_true", help="only the cases of bench.perf --quick")
    args = parser.parse_args()
    target = f"ascend -soc={args.soc}" + (f" -cores={args.cores}" if args.cores else "")
    report = {"target": str(ember.parse_target(target)), "kernels": []}
    for case in kernel_cases():
        if args.quick and not case.quick:
            continue
        title = f"{case.name} {case.shape}"
        start = time.perf_counter()
        try:
            compiled = ember.compile(case.model, target=target)
        except AscendError as err:
            print(f"\n== {title}: not planned: {err}")
            report["kernels"].append({"case": title, "error": str(err)})
            continue
        seconds = time.perf_counter() - start
        print(f"\n== {title} (generated in {seconds:.2f}s)\n{plan_table(compiled)}")
        report["kernels"].append({"case": title, "generate_s": round(seconds, 3), "launches": plan_rows(compiled)})
    RESULTS.parent.mkdir(exist_ok=True)
    RESULTS.write_text(json.dumps(report, indent=1))
    print(f"\nwrote {RESULTS}")


if __name__ == "__main__":
    main()
