"""A measurement hook for the tuner's tests only (loaded in the worker through MeasureOptions.hook).

EMBER_TEST_SABOTAGE lists ACTION:CANDIDATE_ID items: crash (the worker exits), hang (sleeps past the run
timeout) or wrong (the output is perturbed); the id `*` means every candidate, and `spare:ID` exempts one.
"""
from __future__ import annotations

import os
import time

from ember.tune.database import candidate_id


def sabotage(phase: str, trace: str, outputs) -> None:  # type: ignore[no-untyped-def]
    cid = candidate_id(trace)
    items = [item.split(":", 1) for item in os.environ.get("EMBER_TEST_SABOTAGE", "").split(",") if item]
    if any(action == "spare" and who == cid for action, who in items):
        return
    actions = {action for action, who in items if who in (cid, "*")}
    if "crash" in actions and phase == "run":
        os._exit(3)
    if "hang" in actions and phase == "run":
        time.sleep(600)
    if "wrong" in actions and phase == "check":
        outputs[0][...] += 1
