"""Schedules as data: every primitive call becomes an `Instruction`; a `Trace` prints, serialises and replays."""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

TRACE_VERSION = 1


@dataclass(frozen=True)
class Instruction:
    """One schedule primitive: `kind` names it, `stage` is the stage it acts on (or "" for schedule-level ones),
    `args` holds axis/stage/tensor names and plain values only, so it survives JSON."""

    kind: str
    stage: str
    args: tuple[tuple[str, Any], ...] = ()

    def arg(self, name: str, default: Any = None) -> Any:
        return dict(self.args).get(name, default)

    def __str__(self) -> str:
        parts = ", ".join(f"{k}={v!r}" for k, v in self.args)
        target = f"s[{self.stage!r}]." if self.stage else "s."
        return f"{target}{self.kind}({parts})"


@dataclass
class Trace:
    instructions: list[Instruction] = field(default_factory=list)

    def append(self, kind: str, stage: str, **args: Any) -> None:
        clean = tuple((k, list(v) if isinstance(v, tuple) else v) for k, v in args.items())
        self.instructions.append(Instruction(kind, stage, tuple((k, _freeze(v)) for k, v in clean)))

    def __str__(self) -> str:
        return "\n".join(str(i) for i in self.instructions) or "(default schedule)"

    def __len__(self) -> int:
        return len(self.instructions)

    def to_json(self) -> str:
        data = {"version": TRACE_VERSION,
                "instructions": [{"kind": i.kind, "stage": i.stage, "args": {k: _thaw(v) for k, v in i.args}}
                                 for i in self.instructions]}
        return json.dumps(data, separators=(",", ":"))

    @classmethod
    def from_json(cls, text: str) -> "Trace":
        from .schedule import ScheduleError
        try:
            data = json.loads(text)
            if data.get("version") != TRACE_VERSION:
                raise ScheduleError(f"schedule trace version {data.get('version')!r} is not {TRACE_VERSION}")
            out = cls()
            for item in data["instructions"]:
                out.append(item["kind"], item["stage"], **item["args"])
            return out
        except (KeyError, TypeError, AttributeError, json.JSONDecodeError) as err:
            raise ScheduleError(f"malformed schedule trace: {err}") from None

    def apply(self, schedule) -> None:
        """Replay onto a fresh schedule of the same workload; gives identical loops and code."""
        for inst in self.instructions:
            schedule.replay(inst)


def _freeze(v: Any) -> Any:
    return tuple(_freeze(x) for x in v) if isinstance(v, list) else v


def _thaw(v: Any) -> Any:
    return [_thaw(x) for x in v] if isinstance(v, tuple) else v
