"""Schedules, lowering, the pass pipeline, targets and `build`."""
from .build import build
from .default_schedule import default_schedule
from .schedule import Axis, Schedule, ScheduleError, Stage, create_schedule, from_trace
from .target import Target, TargetError, parse_target
from .trace import Instruction, Trace
