"""The autotuner on tiny workloads with small budgets: database round trip, resumption, failing candidates,
correctness of tuned code, automatic use when compiling, and the database switches."""
from __future__ import annotations

import json
import logging
import random
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings, strategies as st

import ember
from ember.compiler.default_schedule import default_schedule
from ember.compiler.schedule import ScheduleError
from ember.compiler.target import parse_target
from ember.tune import MeasureOptions, SearchOptions, TunedRecordWarning, TuningDBWarning, autotune, open_db, using
from ember.tune.cost_model import CostModel
from ember.tune.database import candidate_id, workload_key
from ember.tune.database import TuningDB
from ember.tune.measure import Measurer, Result, Workload, random_inputs
from ember.tune.search import CONFIRM_LOSSES, CONFIRM_MARGIN, TaskResult, _confirm
from ember.tune.space import Space

FAST = MeasureOptions(repeats=2, min_repeat_s=0.0002, flush_bytes=1 << 20, compile_timeout=60, run_timeout=10)
LLVM = parse_target("llvm")


def matmul(n: int = 32):
    a = ember.placeholder((n, n), name="A")
    b = ember.placeholder((n, n), name="B")
    k = ember.reduce_axis(n, "k")
    c = ember.compute((n, n), lambda i, j: ember.sum(a[i, k] * b[k, j], axis=k), name="C")
    return [c], [a, b, c]


def softmax(rows: int = 8, cols: int = 40):
    x = ember.placeholder((rows, cols), name="X")
    k = ember.reduce_axis(cols, "k")
    m = ember.compute((rows,), lambda i: ember.max(x[i, k], axis=k), name="M")
    e = ember.compute((rows, cols), lambda i, j: ember.exp(x[i, j] - m[i]), name="E")
    k2 = ember.reduce_axis(cols, "k2")
    s = ember.compute((rows,), lambda i: ember.sum(e[i, k2], axis=k2), name="S")
    y = ember.compute((rows, cols), lambda i, j: e[i, j] / s[i], name="Y")
    return [y], [x, y]


def softmax_ref(x: np.ndarray) -> np.ndarray:
    e = np.exp(x - x.max(1, keepdims=True))
    return e / e.sum(1, keepdims=True)


def records(db: Path, kind: str = "measure") -> list[dict]:
    return [r for r in map(json.loads, db.read_text().splitlines()) if r["kind"] == kind]


def some_tuned_trace(outs, args, seed: int = 0) -> str:  # type: ignore[no-untyped-def]
    """A legal non-default trace from the workload's space."""
    space, rng = Space(outs, args, LLVM), random.Random(seed)
    default = default_schedule(outs, LLVM).trace.to_json()
    while True:
        try:
            trace = space.apply(space.random(rng)).trace.to_json()
        except ScheduleError:
            continue
        if trace != default:
            return trace


@pytest.fixture
def db(tmp_path: Path) -> Path:
    return tmp_path / "tuning.jsonl"


def test_tuning_writes_the_database_and_tuned_code_matches_numpy(db: Path) -> None:
    outs, args = matmul()
    summary = autotune(outs, args, trials=6, database=db, measure=FAST, name="mm")
    (res,) = summary.kernels
    assert res.default_time and res.best_time and res.best_time <= res.default_time
    assert 1 <= res.trials <= 6 and res.failures == 0
    recs = records(db)
    assert len(recs) == res.trials
    assert all(r["target"] == LLVM.canonical() and r["ember_version"] == ember.__version__ and r["status"] == "ok"
               for r in recs)
    assert sum(r["default"] for r in recs) == 1
    a, b = (np.random.default_rng(1).standard_normal((32, 32)).astype(np.float32) for _ in range(2))
    with using(db):
        kernel = ember.build(*matmul())
    np.testing.assert_allclose(kernel(a, b), a @ b, rtol=1e-4, atol=1e-4)
    best = open_db(db).best(workload_key(outs), LLVM.canonical())
    expected = best["trace_json"] if best else default_schedule(outs, LLVM).trace.to_json()
    assert kernel.source("schedule") == str(ember.from_trace(matmul()[0], expected).trace)
    assert "mm" in str(summary) and res.as_dict()["trials"] == res.trials


def test_resuming_never_measures_a_candidate_twice(db: Path) -> None:
    outs, args = softmax()
    first = autotune(outs, args, trials=4, database=db, measure=FAST, search=SearchOptions(batch=2))
    again = autotune(*softmax(), trials=6, database=db, measure=FAST, search=SearchOptions(batch=2))
    ids = [r["candidate"] for r in records(db)]
    assert len(ids) == len(set(ids)) == first.kernels[0].trials + again.kernels[0].trials
    assert again.kernels[0].resumed == first.kernels[0].trials
    assert sum(r["default"] for r in records(db)) == 1  # the default was not measured again


def test_compiling_uses_a_best_record_automatically(db: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    outs, args = softmax()
    trace = some_tuned_trace(outs, args)
    open_db(db).record("best", workload_key(outs), LLVM.canonical(), task="softmax", trace_json=trace,
                       status="ok", time_s=1e-6)
    x = np.random.default_rng(3).standard_normal((8, 40)).astype(np.float32)
    monkeypatch.setenv("EMBER_TUNING_DB", str(db))
    kernel = ember.build(*softmax())
    assert kernel.source("schedule") == str(ember.Trace.from_json(trace))
    np.testing.assert_allclose(kernel(x), softmax_ref(x), rtol=1e-5, atol=1e-6)
    monkeypatch.setenv("EMBER_TUNING_DB", "0")
    assert ember.build(*softmax()).source("schedule") == str(default_schedule(softmax()[0], LLVM).trace)
    assert ember.build(*softmax(), tuning_db=db).source("schedule") == str(ember.Trace.from_json(trace))
    monkeypatch.setenv("EMBER_TUNING_DB", str(db))
    assert ember.build(*softmax(), tuning_db=False).source("schedule") == \
        str(default_schedule(softmax()[0], LLVM).trace)


def test_other_targets_versions_and_corrupt_lines_are_ignored(db: Path, caplog: pytest.LogCaptureFixture) -> None:
    outs, args = softmax()
    trace = some_tuned_trace(outs, args)
    tdb = open_db(db)
    tdb.record("best", workload_key(outs), "llvm -mcpu=some-other-cpu", task="s", trace_json=trace, status="ok",
               time_s=1e-6)
    tdb.record("best", workload_key(outs), LLVM.canonical(), task="s", trace_json=trace, status="ok", time_s=1e-6,
               ember_version="0.0.1")
    default = str(default_schedule(outs, LLVM).trace)
    with using(db), caplog.at_level(logging.INFO, logger="ember"):
        assert ember.build(*softmax()).source("schedule") == default
    assert "0.0.1" in caplog.text and "some-other-cpu" in caplog.text
    with db.open("a") as f:
        f.write('{"kind": "best", "workload": \n')
        f.write("not json at all\n")
    tdb.record("best", workload_key(outs), LLVM.canonical(), task="s", trace_json=trace, status="ok", time_s=1e-6)
    with using(db), pytest.warns(TuningDBWarning, match="corrupt line"):
        kernel = ember.build(*softmax())
    assert kernel.source("schedule") == str(ember.Trace.from_json(trace))


def test_a_stale_record_falls_back_to_the_default(db: Path) -> None:
    outs, _ = softmax()
    stale = json.dumps({"version": 1, "instructions": [{"kind": "split", "stage": "Y",
                                                        "args": {"axis": "gone", "factor": 4}}]})
    open_db(db).record("best", workload_key(outs), LLVM.canonical(), task="s", trace_json=stale, status="ok",
                       time_s=1e-6)
    with using(db), pytest.warns(TunedRecordWarning, match="no longer applies"):
        kernel = ember.build(*softmax())
    assert kernel.source("schedule") == str(default_schedule(softmax()[0], LLVM).trace)


def test_a_record_that_replays_but_does_not_compile_falls_back(db: Path) -> None:
    """A trace that still replays onto the workload but no longer compiles for the target (here a GPU thread
    binding on the CPU) costs a warning, not the build: the default schedule is used."""
    outs, _ = softmax()
    unbuildable = json.dumps({"version": 1, "instructions": [{"kind": "bind", "stage": "Y",
                                                              "args": {"axis": "j", "tag": "threadIdx.x"}}]})
    open_db(db).record("best", workload_key(outs), LLVM.canonical(), task="s", trace_json=unbuildable,
                       status="ok", time_s=1e-6)
    with using(db), pytest.warns(TunedRecordWarning, match="does not compile"):
        kernel = ember.build(*softmax())
    assert kernel.source("schedule") == str(default_schedule(softmax()[0], LLVM).trace)
    x = np.random.default_rng(4).standard_normal((8, 40)).astype(np.float32)
    np.testing.assert_allclose(kernel(x), softmax_ref(x), rtol=1e-5, atol=1e-6)


def test_crashing_hanging_and_wrong_candidates_are_failed(monkeypatch: pytest.MonkeyPatch) -> None:
    outs, args = softmax()
    traces = [default_schedule(outs, LLVM).trace.to_json()]
    traces += [some_tuned_trace(outs, args, seed) for seed in range(1, 40)]
    traces = list(dict.fromkeys(traces))[:5]
    crash, hang, wrong, good = (candidate_id(t) for t in traces[1:5])
    monkeypatch.setenv("EMBER_TEST_SABOTAGE", f"crash:{crash},hang:{hang},wrong:{wrong}")
    monkeypatch.syspath_prepend(str(Path(__file__).parent))
    monkeypatch.setenv("PYTHONPATH", str(Path(__file__).parent))
    opts = MeasureOptions(**{**FAST.__dict__, "run_timeout": 3, "hook": "tune_hooks:sabotage", "workers": 2})
    work = Workload("softmax", outs, args, LLVM.canonical(), random_inputs(args))
    with Measurer(opts) as m:
        results = m.measure(work, [(candidate_id(t), t) for t in traces])
        assert [r.status for r in results] == ["ok", "crash", "timeout", "wrong", "ok"]
        assert results[4].cid == good and results[4].time_s > 0
        again = m.measure(work, [(candidate_id(traces[0]), traces[0])])  # the pool recovered
        assert again[0].status == "ok"


def test_failed_candidates_are_never_chosen(db: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    outs, args = matmul(16)
    default = candidate_id(default_schedule(outs, LLVM).trace.to_json())
    monkeypatch.setenv("EMBER_TEST_SABOTAGE", f"wrong:*,spare:{default}")
    monkeypatch.setenv("PYTHONPATH", str(Path(__file__).parent))
    opts = MeasureOptions(**{**FAST.__dict__, "hook": "tune_hooks:sabotage"})
    (res,) = autotune(outs, args, trials=5, database=db, measure=opts).kernels
    assert res.failures == res.trials - 1 and res.failure_kinds == {"wrong": res.trials - 1}
    assert res.best_time == res.default_time
    assert not records(db, "best")
    with using(db):
        assert ember.build(*matmul(16)).source("schedule") == str(default_schedule(matmul(16)[0], LLVM).trace)


@settings(max_examples=6, deadline=None)
@given(seed=st.integers(0, 10_000))
def test_space_candidates_are_legal_or_rejected_and_correct(seed: int) -> None:
    outs, args = softmax(5, 37)
    space = Space(outs, args, LLVM)
    d = space.random(random.Random(seed))
    try:
        sch = space.apply(d)
    except ScheduleError:
        return
    x = np.random.default_rng(seed).standard_normal((5, 37)).astype(np.float32)
    fresh, fresh_args = softmax(5, 37)  # replayed on a new copy of the workload, as the database does
    got = ember.build(ember.from_trace(fresh, sch.trace.to_json()), fresh_args)(x)
    np.testing.assert_allclose(got, softmax_ref(x), rtol=1e-5, atol=1e-6)


def matmul_relu(m: int = 64, k: int = 48, n: int = 80):
    a, b = ember.placeholder((m, k), name="A"), ember.placeholder((k, n), name="B")
    r = ember.reduce_axis(k, "r")
    c = ember.compute((m, n), lambda i, j: ember.sum(a[i, r] * b[r, j], axis=r), name="C")
    y = ember.compute((m, n), lambda i, j: ember.maximum(c[i, j], 0.0), name="Y")
    return [y], [a, b, y]


@settings(max_examples=6, deadline=None)
@given(seed=st.integers(0, 10_000))
def test_blocked_candidates_keep_the_epilogue_fused(seed: int) -> None:
    """Candidates with the register-blocked contraction make its element-wise reader the tile's write-back, as
    the default schedule does (so tuning can match the default), and compute the right result."""
    outs, args = matmul_relu()
    space = Space(outs, args, LLVM)
    d = space.random(random.Random(seed)) if seed else space.default_decisions()
    try:
        sch = space.apply(d)
    except ScheduleError:
        return
    if d.get("C:mode", "blocked") == "blocked":
        assert "s['C'].compute_inline()" in str(sch.trace) and "compute_at(parent='Y'" in str(sch.trace)
    rng = np.random.default_rng(seed)
    a, b = rng.standard_normal((64, 48), dtype=np.float32), rng.standard_normal((48, 80), dtype=np.float32)
    got = ember.build(sch, args)(a, b)
    np.testing.assert_allclose(got, np.maximum(a @ b, 0), rtol=1e-4, atol=1e-4)


def test_cost_model_ranks_by_what_it_learned() -> None:
    rng = np.random.default_rng(0)
    x = rng.uniform(0, 4, size=(60, 3))
    t = np.exp(0.5 * x[:, 0] - 0.3 * (x[:, 1] > 2))
    model = CostModel()
    model.fit(x, t)
    pred = model.predict(np.array([[0.2, 3.0, 1.0], [3.8, 1.0, 1.0]]))
    assert pred[0] < pred[1]
    assert np.corrcoef(model.predict(x), np.log(t))[0, 1] > 0.9


def test_autotune_rejects_bad_arguments(db: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    outs, args = matmul(8)
    with pytest.raises(ValueError, match="trials"):
        autotune(outs, args, trials=0, database=db)
    with pytest.raises(ValueError, match="time_budget"):
        autotune(outs, args, time_budget=-1, database=db)
    monkeypatch.setenv("EMBER_TUNING_DB", "0")
    with pytest.raises(ValueError, match="switched off"):
        autotune(outs, args)
    with pytest.raises(TypeError, match="output tensor"):
        autotune([1, 2], database=db)


def tiny_model(path: Path) -> Path:
    from onnx import TensorProto, helper, numpy_helper, save
    w = numpy_helper.from_array(np.random.default_rng(5).standard_normal((24, 16)).astype(np.float32), "w")
    graph = helper.make_graph(
        [helper.make_node("MatMul", ["x", "w"], ["h"]), helper.make_node("Relu", ["h"], ["r"]),
         helper.make_node("Softmax", ["r"], ["y"], axis=-1)], "tiny",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [8, 24])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [8, 16])], [w])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    save(model, str(path))
    return path


def test_cli_tunes_a_model_and_compiling_it_uses_the_database(tmp_path: Path, db: Path,
                                                             capsys: pytest.CaptureFixture) -> None:
    from ember.runtime.cli import main
    from ember.tune.cli import parse_duration
    assert parse_duration("10m") == 600 and parse_duration("90") == 90 and parse_duration("1.5h") == 5400
    model = tiny_model(tmp_path / "tiny.onnx")
    assert main(["tune", str(model), "--trials", "3", "--budget", "60s", "--db", str(db)]) == 0
    out, err = capsys.readouterr()
    assert "speed-up" in out and "[tune]" in err
    tuned = {r["workload"] for r in records(db)}
    assert len(tuned) >= 2  # the matmul(+relu) kernel and the softmax kernel
    x = np.random.default_rng(6).standard_normal((8, 24)).astype(np.float32)
    with using(db):
        (got,) = ember.compile(str(model))(x)
    w = np.random.default_rng(5).standard_normal((24, 16)).astype(np.float32)
    np.testing.assert_allclose(got, softmax_ref(np.maximum(x @ w, 0)), rtol=1e-5, atol=1e-6)
    assert main(["tune", str(tmp_path / "missing.onnx"), "--db", str(db)]) == 2


def test_configs_pick_a_correct_config_and_remember_it(db: Path) -> None:
    from ember.tune import configs

    def total(x, *, chunk, bias=0.0):  # type: ignore[no-untyped-def]
        return x.reshape(-1, chunk).sum(axis=1).sum() + bias

    candidates = [{"chunk": 4}, {"chunk": 8}, {"chunk": 5}, {"chunk": 16, "bias": 1.0}]
    tuned = configs(candidates, key=["x"], repeats=3, database=str(db))(ember.jit(total))
    x = np.random.default_rng(7).standard_normal(64).astype(np.float32)
    np.testing.assert_allclose(tuned(x), x.sum(), rtol=1e-5)
    (choice,) = tuned.chosen.values()
    assert choice in candidates[:2]  # chunk 5 does not divide 64; the biased one gives another answer
    (rec,) = records(db, "config")
    assert rec["config"] == choice and len(rec["failed"]) == 2
    again = configs(candidates, key=["x"], database=str(db))(ember.jit(total))
    np.testing.assert_allclose(again(x), x.sum(), rtol=1e-5)
    assert len(records(db, "config")) == 1  # taken from the database, not timed again


def test_concurrent_appends_keep_every_line_whole(db: Path) -> None:
    import threading
    outs, _ = softmax()
    key, trace = workload_key(outs), default_schedule(outs, LLVM).trace.to_json()

    def writer(n: int) -> None:
        tdb = ember.tune.TuningDB(db)  # separate handles, as separate processes would have
        for k in range(100):
            tdb.record("measure", key, LLVM.canonical(), task=f"w{n}", trace_json=trace, status="ok", time_s=k,
                       decisions={"pad": "x" * 3000})
    threads = [threading.Thread(target=writer, args=(n,)) for n in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    lines = db.read_text().splitlines()
    assert len(lines) == 400 and all(json.loads(line)["task"].startswith("w") for line in lines)


class _Timings:
    """A measurer whose re-measurement gives the default and the best fixed times, alternately (the best's time
    replaced by `burst` in the rounds listed there: a slow phase of the machine)."""

    def __init__(self, default: float, best: float, burst: "dict[int, float] | None" = None) -> None:
        self.times, self.burst = (default, best), burst or {}

    def measure(self, workload, pairs):  # type: ignore[no-untyped-def]
        return [Result(cid, "ok", self.burst.get(k // 2, self.times[1]) if k % 2 else self.times[0])
                for k, (cid, _) in enumerate(pairs)]


@pytest.mark.parametrize("share,recorded", [(1 - CONFIRM_MARGIN / 2, False), (1 - 2 * CONFIRM_MARGIN, True)])
def test_a_best_is_recorded_only_if_it_wins_by_the_margin(db: Path, share: float, recorded: bool) -> None:
    outs, args = matmul(16)
    default, other = default_schedule(outs, LLVM).trace.to_json(), some_tuned_trace(outs, args)
    res = TaskResult("mm", workload_key(outs), best_trace=other)
    _confirm(res, _Timings(1e-3, share * 1e-3), None, default, TuningDB(db), res.key, LLVM.canonical(), outs)
    assert bool(db.exists() and records(db, "best")) == recorded
    assert res.best_trace == (other if recorded else default)
    assert res.best_time == pytest.approx(share * 1e-3 if recorded else 1e-3)


@pytest.mark.parametrize("lost,recorded", [(CONFIRM_LOSSES, True), (CONFIRM_LOSSES + 1, False)])
def test_a_best_must_win_nearly_every_round(db: Path, lost: int, recorded: bool) -> None:
    """A median that wins by far is still refused when the best lost more than CONFIRM_LOSSES of the rounds."""
    outs, args = matmul(16)
    default, other = default_schedule(outs, LLVM).trace.to_json(), some_tuned_trace(outs, args)
    res = TaskResult("mm", workload_key(outs), best_trace=other)
    timings = _Timings(1e-3, 0.5e-3, {k: 2e-3 for k in range(lost)})
    _confirm(res, timings, None, default, TuningDB(db), res.key, LLVM.canonical(), outs)
    assert bool(db.exists() and records(db, "best")) == recorded


def depthwise_bias(c: int = 3, rows: int = 12, cols: int = 34):
    x = ember.placeholder((c, rows, cols), name="X")
    w = ember.placeholder((c, 3, 3), name="W")
    b = ember.placeholder((c,), name="B")
    r0, r1 = ember.reduce_axis(3, "r0"), ember.reduce_axis(3, "r1")
    acc = ember.compute((c, rows - 2, cols - 2), lambda k, i, j: ember.sum(
        x[k, i + r0.var, j + r1.var] * w[k, r0.var, r1.var], axis=[r0, r1]), name="ACC")
    y = ember.compute((c, rows - 2, cols - 2), lambda k, i, j: acc[k, i, j] + b[k], name="Y")
    return [y], [x, w, b, y]


@settings(max_examples=8, deadline=None)
@given(seed=st.integers(0, 10_000))
def test_window_blocks_are_knobs_and_keep_results(seed: int) -> None:
    """A depthwise convolution's output block (rows x vectors) is searched; the first choices are the default
    schedule itself, so tuning starts from it, and every block computes the same result."""
    outs, args = depthwise_bias()
    space = Space(outs, args, LLVM)
    assert any(k.name == "ACC:block" for k in space.knobs)
    if not seed:
        assert str(space.apply(space.default_decisions()).trace) == str(default_schedule(outs, LLVM).trace)
    d = space.random(random.Random(seed)) if seed else space.default_decisions()
    d["ACC:mode"] = "window"
    try:
        sch = space.apply(d)
    except ScheduleError:
        return
    rng = np.random.default_rng(seed)
    x, w = rng.standard_normal((3, 12, 34), dtype=np.float32), rng.standard_normal((3, 3, 3), dtype=np.float32)
    b = rng.standard_normal(3, dtype=np.float32)
    want = sum(x[:, i:i + 10, j:j + 32] * w[:, i, j, None, None] for i in range(3) for j in range(3)) + b[:, None, None]
    np.testing.assert_allclose(ember.build(sch, args)(x, w, b), want, rtol=1e-4, atol=1e-4)


@settings(max_examples=8, deadline=None)
@given(seed=st.integers(0, 10_000))
def test_row_groups_are_knobs_and_keep_results(seed: int) -> None:
    """Softmax computed row by row (the default) is the space's first choice, and every choice of partials or of
    the generic schedule computes the same result."""
    outs, args = softmax(6, 80)
    space = Space(outs, args, LLVM)
    assert {"Y:rows", "Y:partials"} <= {k.name for k in space.knobs}
    if not seed:
        assert str(space.apply(space.default_decisions()).trace) == str(default_schedule(outs, LLVM).trace)
    d = space.random(random.Random(seed)) if seed else space.default_decisions()
    try:
        sch = space.apply(d)
    except ScheduleError:
        return
    x = np.random.default_rng(seed).standard_normal((6, 80)).astype(np.float32)
    np.testing.assert_allclose(ember.build(sch, args)(x), softmax_ref(x), rtol=1e-5, atol=1e-6)
