"""Tests for target parsing: defaults, canonical cache-key form, errors, SoC facts and pickling."""

import os
import pickle
import subprocess
import sys
import types

import llvmlite.binding as llvm
import pytest

from ember.compiler.target import (KINDS, OPTIONS, SOCS, SocInfo, Target, TargetError, _parse, host_cpu,
                                   parse_target)


def test_kinds_and_tables_agree():
    assert KINDS == ("llvm", "cuda", "ascend")
    assert set(OPTIONS) == set(KINDS)


def test_llvm_defaults_come_from_the_host():
    t = parse_target("llvm")
    cpu, features = host_cpu()
    assert (cpu, features) == (llvm.get_host_cpu_name(), llvm.get_host_cpu_features().flatten())
    assert t.kind == "llvm"
    assert t.get("mcpu") == cpu
    assert t.get("mattr") == features
    assert t.get("mtriple") == llvm.get_process_triple()
    assert t.get("opt") == 3
    assert t.get("fastmath") is False
    assert t.get("threads") == os.cpu_count()
    assert t.emulate is False


def test_options_hold_every_option_sorted():
    for kind in KINDS:
        names = [name for name, _ in parse_target(kind).options]
        assert names == sorted(spec.name for spec in OPTIONS[kind])


def test_explicit_mcpu_drops_host_features():
    t = parse_target("llvm -mcpu=znver4")
    assert t.get("mcpu") == "znver4"
    assert t.get("mattr") == ""
    t = parse_target("llvm -mcpu=skylake-avx512 -mattr=+avx512f,+fma -opt=2 -fastmath")
    assert t.get("mattr") == "+avx512f,+fma"
    assert t.get("opt") == 2
    assert t.get("fastmath") is True


def test_cuda_defaults_and_options():
    t = parse_target("cuda")
    assert t.get("arch") == "sm_80" or "cupy" in sys.modules  # on a GPU machine: the device's (test below)
    assert t.get("max-threads-per-block") == 1024
    assert t.get("max-shared-memory-per-block") == 49152
    assert t.emulate is False
    t = parse_target("cuda -arch=sm_90 -emulate")
    assert t.get("arch") == "sm_90"
    assert t.emulate is True
    assert parse_target("cuda -arch=sm_120").get("arch") == "sm_120"


def test_ascend_defaults_and_soc_info():
    t = parse_target("ascend")
    assert t.get("soc") == "ascend910b"
    assert t.soc == SocInfo("ascend910b", 2201, 192 * 1024, 48, True)
    assert t.get("cores") == 48
    assert t.emulate is False
    t = parse_target("ascend -soc=ascend310p -emulate")
    assert t.soc == SOCS["ascend310p"] == SocInfo("ascend310p", 2002, 256 * 1024, 8, False)
    assert t.get("cores") == 8
    assert t.emulate is True
    assert parse_target("ascend -soc=ascend910b -cores=40").get("cores") == 40


def test_soc_only_for_ascend():
    with pytest.raises(TargetError, match="only ascend targets have a SoC"):
        parse_target("cuda").soc


def test_get_unknown_option():
    with pytest.raises(TargetError, match=r"target kind 'cuda' has no option 'opt'; options: -arch, -emulate"):
        parse_target("cuda").get("opt")


def test_canonical_is_stable_and_default_insensitive():
    assert parse_target("llvm").canonical() == parse_target("llvm").canonical()
    assert parse_target("llvm") == parse_target("llvm -opt=3")
    assert parse_target("llvm").canonical() == parse_target("llvm -opt=3").canonical()
    assert parse_target("  llvm\t-opt=3 ") == parse_target("llvm")
    assert parse_target("cuda -emulate -arch=sm_80") == parse_target("cuda -arch=sm_80 -emulate")
    assert str(parse_target("ascend")) == "ascend -cores=48 -soc=ascend910b"
    assert str(parse_target("cuda -arch=sm_90 -emulate")) == (
        "cuda -arch=sm_90 -emulate -max-shared-memory-per-block=49152 -max-threads-per-block=1024"
    )


def test_canonical_is_stable_across_processes():
    code = "from ember.compiler.target import parse_target; print(parse_target('llvm').canonical())"
    runs = {subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
            for _ in range(2)}
    assert runs == {parse_target("llvm").canonical() + "\n"}


@pytest.mark.parametrize("spec", [
    "llvm",
    "llvm -mcpu=znver4",
    "llvm -mcpu=skylake-avx512 -mattr=+avx512f,+fma -opt=2 -fastmath",
    "llvm -opt=0 -threads=3 -mtriple=aarch64-unknown-linux-gnu -mcpu=generic",
    "cuda",
    "cuda -arch=sm_90",
    "cuda -arch=sm_90 -emulate -max-threads-per-block=256 -max-shared-memory-per-block=0",
    "ascend",
    "ascend -soc=ascend910b",
    "ascend -soc=ascend310p -emulate -cores=2",
])
def test_round_trip_hash_and_pickle(spec):
    t = parse_target(spec)
    assert parse_target(t.canonical()) == t
    assert parse_target(t) is t
    copy = pickle.loads(pickle.dumps(t))
    assert copy == t and hash(copy) == hash(t) and str(copy) == str(t)


def test_cuda_arch_defaults_to_the_present_gpu(monkeypatch):
    """A cubin loads only on its own major architecture, so without -arch a GPU target builds for the device."""
    device = types.SimpleNamespace(compute_capability="90")
    monkeypatch.setitem(sys.modules, "cupy", types.SimpleNamespace(cuda=types.SimpleNamespace(Device=lambda: device)))
    _parse.cache_clear()
    try:
        assert parse_target("cuda").get("arch") == "sm_90"
        assert parse_target("cuda -emulate").get("arch") == "sm_80"  # the emulator has no device to ask
        assert parse_target("cuda -arch=sm_80").get("arch") == "sm_80"
        monkeypatch.setitem(sys.modules, "cupy", None)  # no cupy: the documented default
        _parse.cache_clear()
        assert parse_target("cuda").get("arch") == "sm_80"
    finally:
        _parse.cache_clear()


def test_parse_is_cached_and_hashable():
    assert parse_target("cuda -arch=sm_90") is parse_target("cuda -arch=sm_90")
    assert len({parse_target("llvm"), parse_target("llvm -opt=3"), parse_target("llvm -opt=2")}) == 2


@pytest.mark.parametrize(("spec", "message"), [
    ("", "invalid target '': empty target string; expected one of llvm, cuda, ascend"),
    ("   ", "empty target string"),
    ("rocm -arch=gfx90a", "unknown target kind 'rocm'; valid kinds: llvm, cuda, ascend"),
    ("cuda -opt=2", "unknown option -opt for cuda; valid options: -arch, -emulate, -max-threads-per-block, "
                    "-max-shared-memory-per-block"),
    ("llvm -mcp=znver4", "unknown option -mcp for llvm (did you mean -mcpu?); valid options: -mcpu, -mattr, "
                         "-mtriple, -opt, -fastmath, -threads"),
    ("llvm --opt=2", "options take a single dash: write '-opt=2', not '--opt=2'"),
    ("llvm -fastmath=1", "-fastmath is a flag and takes no value (write -fastmath, not '-fastmath=1')"),
    ("cuda -emulate=", "-emulate is a flag and takes no value"),
    ("llvm -opt", "option -opt needs a value: -opt=VALUE"),
    ("llvm -opt 2", "option -opt needs a value: -opt=VALUE"),
    ("llvm -mcpu=x opt=2", "expected an option like -name or -name=value, got 'opt=2'"),
    ("llvm -opt=fast", "-opt expects an integer, got 'fast'"),
    ("llvm -opt=", "-opt expects an integer, got ''"),
    ("llvm -opt=2.0", "-opt expects an integer, got '2.0'"),
    ("llvm -opt=4", "-opt=4: must be in 0..3"),
    ("llvm -opt=-1", "-opt=-1: must be in 0..3"),
    ("llvm -threads=0", "-threads=0: must be >= 1"),
    ("llvm -mcpu=", "-mcpu=: must be an LLVM CPU name"),
    ("llvm -mattr=avx2", "-mattr=avx2: must be a comma list like +avx2,-avx512f"),
    ("cuda -arch=sm_40", "-arch=sm_40: must be sm_XX with XX in 50..120"),
    ("cuda -arch=sm_121", "-arch=sm_121: must be sm_XX with XX in 50..120"),
    ("cuda -arch=compute_90", "-arch=compute_90: must be sm_XX with XX in 50..120"),
    ("cuda -max-threads-per-block=2048", "-max-threads-per-block=2048: must be in 1..1024"),
    ("ascend -soc=ascend910a", "-soc=ascend910a is not a valid choice; choices: ascend910b, ascend310p"),
    ("ascend -cores=0", "-cores=0: must be in 1..65535"),
    ("llvm -opt=1 -opt=2", "duplicate option -opt"),
    ("cuda -emulate -emulate", "duplicate option -emulate"),
])
def test_errors(spec, message):
    with pytest.raises(TargetError) as info:
        parse_target(spec)
    text = str(info.value)
    assert message in text
    assert text.startswith(f"invalid target {spec!r}: ")
    assert "\n" not in text
    assert info.value.__cause__ is None and info.value.__context__ is None


def test_target_error_is_a_value_error_and_rejects_non_strings():
    assert issubclass(TargetError, ValueError)
    with pytest.raises(TargetError, match="a target must be a string or Target, not int"):
        parse_target(3)  # type: ignore[arg-type]


def test_target_is_frozen():
    t = parse_target("cuda")
    with pytest.raises(AttributeError):
        t.kind = "llvm"  # type: ignore[misc]
    assert isinstance(t, Target)
