"""Multi-GPU split with fake device lists: weights, the stored profile, failover. No CUDA needed."""
from __future__ import annotations

import json
import logging
import threading
from datetime import datetime, timedelta, timezone

import numpy as np
import pandas as pd
import pytest

import threadx
from threadx.data.bars import as_bars
from threadx.data.synthetic import generate_synthetic
from threadx.gpu import balance, devices as gpu_devices, executor as gpu_executor
from threadx.gpu.balance import (Profile, active_weights, default_weights, load_profile, measure_profile,
                                 profile_path, save_profile, split_counts)
from threadx.gpu.devices import GpuDevice, GpuStatus
from threadx.gpu.executor import GpuExecutor
from threadx.gpu.kernel import KERNEL_VERSION
from threadx.optimize.plan import run_plan
from threadx.gpu.workload import evaluator_for, random_ids
from threadx.optimize.evaluate import SweepTask

A100 = GpuDevice(0, "NVIDIA A100-SXM4-40GB", 40 * 2**30, (8, 0), "GPU-aaaa")
H100 = GpuDevice(1, "NVIDIA H100 80GB HBM3", 80 * 2**30, (9, 0), "GPU-bbbb")
L4 = GpuDevice(2, "NVIDIA L4", 24 * 2**30, (8, 9), "GPU-cccc")


@pytest.fixture
def config_dir(tmp_path, monkeypatch):
    monkeypatch.setenv("THREADX_CONFIG_DIR", str(tmp_path / "config"))
    return tmp_path / "config"


@pytest.fixture(scope="module")
def bars():
    return as_bars(generate_synthetic(days=40, seed=13))


# --- weights ------------------------------------------------------------------------------------------

def test_default_split_is_75_25_with_the_larger_memory_first():
    assert default_weights([A100, H100]) == [0.25, 0.75]
    assert default_weights([H100, A100]) == [0.75, 0.25]
    twin = GpuDevice(1, A100.name, A100.total_memory, A100.compute_capability)
    assert default_weights([A100, twin]) == [0.75, 0.25]  # equal memory: the first one
    assert default_weights([A100, H100, L4]) == pytest.approx([1 / 3] * 3)
    assert default_weights([H100]) == [1.0] and default_weights([]) == []


@pytest.mark.parametrize("n", [0, 1, 3, 10, 1001])
def test_split_counts_follow_the_weights_and_cover_every_combo(n):
    for weights in ([0.75, 0.25], [1, 1, 1], [0.6, 0.0, 0.4], [5.0]):
        counts = split_counts(n, weights)
        assert sum(counts) == n and all(c >= 0 for c in counts)
        share = np.asarray(weights) / sum(weights)
        assert np.all(np.abs(np.asarray(counts) - n * share) <= 1)
    assert split_counts(8, [0.75, 0.25]) == [6, 2]
    with pytest.raises(ValueError):
        split_counts(4, [0.0, 0.0])


# --- the stored profile -----------------------------------------------------------------------------

def _profile(devs, ratios, days_old=0.0, kernel=KERNEL_VERSION) -> Profile:
    created = datetime.now(timezone.utc) - timedelta(days=days_old)
    return Profile([d.identity() for d in devs], list(ratios), kernel, created.isoformat(), [600.0, 400.0])


def test_no_profile_means_the_default_split(config_dir):
    weights = active_weights([A100, H100])
    assert weights.source == "default" and weights.values == (0.25, 0.75) and "threadx gpu profile" in weights.note


def test_profile_is_written_and_reused(config_dir):
    path = save_profile(_profile([A100, H100], [0.6, 0.4]))
    assert path == profile_path() == config_dir / "gpu_profile.json"
    stored = json.loads(path.read_text())
    assert set(stored) >= {"devices", "ratios", "kernel_version", "created_at"}
    assert stored["devices"][1]["name"] == H100.name and stored["kernel_version"] == KERNEL_VERSION
    weights = active_weights([A100, H100])
    assert weights.source == "profile" and weights.values == pytest.approx((0.6, 0.4))


def test_profile_expires_after_14_days(config_dir):
    save_profile(_profile([A100, H100], [0.6, 0.4], days_old=13.5))
    assert active_weights([A100, H100]).source == "profile"
    later = datetime.now(timezone.utc) + timedelta(days=1)
    weights = active_weights([A100, H100], now=later)
    assert weights.source == "default" and weights.values == (0.25, 0.75) and "14 days" in weights.note


@pytest.mark.parametrize("current", [
    [A100, L4],  # a device replaced
    [A100, H100, L4],  # a device added
    [H100, A100],  # renumbered
    [A100],  # a device gone
])
def test_a_changed_device_set_invalidates_the_profile(config_dir, current):
    save_profile(_profile([A100, H100], [0.6, 0.4]))
    weights = active_weights(current)
    assert weights.source == "default" and "devices changed" in weights.note
    assert weights.values == tuple(default_weights(current))


def test_a_new_kernel_or_a_broken_file_invalidates_the_profile(config_dir):
    save_profile(_profile([A100, H100], [0.6, 0.4], kernel="an-older-kernel"))
    assert "kernel changed" in active_weights([A100, H100]).note
    profile_path().write_text("{not json")
    assert load_profile() is None and active_weights([A100, H100]).source == "default"


class FakeClock:
    def __init__(self):
        self.now = 0.0

    def perf_counter(self):
        return self.now


class TimedRunner:
    """Runs combos in a fake time: ``rate`` combos/s, and a long first call (the compilation)."""

    def __init__(self, clock, rate, device, bars, funding, block_end):
        self.clock, self.rate, self.calls = clock, rate, 0

    def run(self, plan, positions=None):
        plan = plan if positions is None else plan.subset(positions)
        self.calls += 1
        self.clock.now += 100.0 if self.calls == 1 else len(plan.ok) / self.rate
        return np.zeros((len(plan), 1)), None


def test_profile_measures_throughput_on_the_kernel_warm_up_excluded(config_dir, monkeypatch):
    clock = FakeClock()
    monkeypatch.setattr(balance, "time", clock)
    rates = {A100.index: 1_000.0, H100.index: 3_000.0}
    factory = lambda device, *args: TimedRunner(clock, rates[device.index], device, *args)  # noqa: E731
    profile = measure_profile([A100, H100], runner_factory=factory, workload={"bars": 300, "combos": 40},
                              min_seconds=0.5)
    assert profile.ratios == pytest.approx([0.25, 0.75])
    assert profile.combos_per_s == pytest.approx([1_000.0, 3_000.0])
    assert profile.kernel_version == KERNEL_VERSION and profile.devices == [A100.identity(), H100.identity()]
    assert profile.workload["strategy"] == "bb_atr" and profile.workload["combos"] == 40
    save_profile(profile)
    assert active_weights([A100, H100]).values == pytest.approx((0.25, 0.75))


# --- the executor with fake devices ------------------------------------------------------------------

class CpuRunner:
    """A stand-in device: the CPU kernel on the plan; counts combos, can fail on a given call."""

    log: dict[int, list[int]] = {}

    def __init__(self, device, bars, funding, block_end, fail_on_call=None):
        self.device, self.bars, self.funding, self.block_end = device, bars, funding, block_end
        self.fail_on_call = fail_on_call
        self.calls = 0

    def run(self, plan, positions=None):
        plan = plan if positions is None else plan.subset(positions)  # (a plan of those combos, row for row)
        self.calls += 1
        if self.fail_on_call is not None and self.calls >= self.fail_on_call:
            raise RuntimeError("CUDA_ERROR_ECC_UNCORRECTABLE: uncorrectable ECC error encountered")
        CpuRunner.log.setdefault(self.device.index, []).append(len(plan.ok))
        return run_plan(plan, self.bars, self.funding, self.block_end)


def _factory(failing=None):
    failing = failing or {}
    lock = threading.Lock()

    def make(device, bars, funding, block_end):
        with lock:
            return CpuRunner(device, bars, funding, block_end, failing.get(device.index))
    return make


def _executor(bars, strategy="ma_crossover", failing=None, n_blocks=0, **kw):
    evaluator = evaluator_for(strategy, bars, n_blocks=n_blocks)
    task = SweepTask(strategy, evaluator.task.space, evaluator.task.options, n_blocks=n_blocks)
    return evaluator, GpuExecutor(task, bars, evaluator.indicators, runner_factory=_factory(failing), **kw)


def _chunks(ids, size):
    return (ids[k:k + size] for k in range(0, len(ids), size))


def test_combos_split_75_25_and_match_the_cpu(bars, config_dir):
    CpuRunner.log = {}
    evaluator, ex = _executor(bars, devices=[A100, H100], n_blocks=4, batch_size=400)
    ids = random_ids(evaluator, 400, seed=4)
    (result,) = list(ex.run(_chunks(ids, 50)))
    ex.close()
    assert CpuRunner.log == {A100.index: [100], H100.index: [300]}  # H100 has the larger memory
    cpu = evaluator.evaluate(ids)
    order = np.argsort(result.ids)
    np.testing.assert_array_equal(result.ids[order], np.sort(ids))
    np.testing.assert_array_equal(result.metrics[order], cpu.metrics[np.argsort(ids)])
    np.testing.assert_array_equal(result.blocks[order], cpu.blocks[np.argsort(ids)])


def test_the_profile_ratios_set_the_split(bars, config_dir):
    save_profile(_profile([A100, H100], [0.4, 0.6]))
    CpuRunner.log = {}
    evaluator, ex = _executor(bars, devices=[A100, H100], batch_size=200)
    list(ex.run(_chunks(random_ids(evaluator, 200, seed=1), 200)))
    ex.close()
    assert CpuRunner.log == {A100.index: [80], H100.index: [120]}
    assert ex.describe()["weights_source"] == "profile"


def test_a_failing_device_hands_its_combos_to_the_others(bars, config_dir):
    CpuRunner.log = {}
    evaluator, ex = _executor(bars, devices=[A100, H100, L4], failing={H100.index: 2}, batch_size=150)
    ids = random_ids(evaluator, 600, seed=7)
    results = list(ex.run(_chunks(ids, 100)))
    ex.close()
    assert len(results) == 4 and sum(len(r.ids) for r in results) == 600
    got_ids = np.concatenate([r.ids for r in results])
    got = np.concatenate([r.metrics for r in results])[np.argsort(got_ids)]
    np.testing.assert_array_equal(got, evaluator.evaluate(np.sort(got_ids)).metrics)
    assert [f.device for f in ex.failures] == [H100] and "ECC" in ex.failures[0].error
    assert ex.failures[0].handed_to == "GPU 0, GPU 2"
    assert len(CpuRunner.log[H100.index]) == 1  # its first batch only; then dropped
    assert sum(CpuRunner.log[A100.index]) + sum(CpuRunner.log[L4.index]) + 50 == 600


def test_when_every_device_fails_the_cpu_finishes_the_run(bars, config_dir):
    CpuRunner.log = {}
    evaluator, ex = _executor(bars, devices=[A100, H100], failing={A100.index: 1, H100.index: 1}, batch_size=64)
    ids = random_ids(evaluator, 128, seed=2)
    results = list(ex.run(_chunks(ids, 64)))
    ex.close()
    assert CpuRunner.log == {} and len(ex.failures) == 2 and ex.failures[-1].handed_to == "the CPU"
    got_ids = np.concatenate([r.ids for r in results])
    got = np.concatenate([r.metrics for r in results])[np.argsort(got_ids)]
    np.testing.assert_array_equal(got, evaluator.evaluate(np.sort(got_ids)).metrics)


def test_cancel_stops_taking_chunks(bars, config_dir):
    evaluator, ex = _executor(bars, devices=[H100], batch_size=32)
    ids = random_ids(evaluator, 256, seed=3)
    stop = threading.Event()
    done = 0
    for result in ex.run(_chunks(ids, 16), stop.is_set):
        done += len(result.ids)
        stop.set()
    ex.close()
    assert 32 <= done <= 64  # the batch that was running when asked, and the one already planned


@pytest.fixture
def fake_gpus(monkeypatch, config_dir):
    """Two fake GPUs for threadx.sweep(executor="gpu"); the second fails on its second batch."""
    status = GpuStatus((A100, H100), backend="fake")
    monkeypatch.setattr(gpu_devices, "detect", lambda refresh=False: status)
    monkeypatch.setattr(gpu_executor, "DeviceRunner", _factory({H100.index: 2}))
    monkeypatch.setattr(gpu_executor, "_SIGNAL_BYTES_PER_BATCH", 64 * 24 * 40)  # small batches
    monkeypatch.setattr(gpu_executor, "_MIN_BATCH", 16)
    return status


def test_sweep_with_executor_gpu_completes_despite_a_failing_device(bars, tmp_path, fake_gpus, caplog):
    space = {"fast_period": "5:20:1", "slow_period": "25:60:5"}
    progress = []
    with caplog.at_level(logging.WARNING, logger="threadx.gpu.executor"):
        gpu = threadx.sweep(bars, "ma_crossover", space, executor="gpu", store=tmp_path, run_id="gpu",
                            progress=progress.append, block_returns=4)
    assert any("GPU 1" in r.getMessage() and "ECC" in r.getMessage() for r in caplog.records)
    cpu = threadx.sweep(bars, "ma_crossover", space, executor="inline", store=tmp_path, run_id="cpu",
                        block_returns=4)
    assert gpu.manifest["status"] == "completed" and gpu.manifest["machine"]["executor"] == "gpu"
    recorded = gpu.manifest["gpu"]  # which devices ran, with what weights, and what failed
    assert len(recorded["devices"]) == 2 and [f["device"] for f in recorded["failures"]] == [1]
    assert len(progress) >= 2 and progress[-1].done == progress[-1].total == len(cpu.results)
    a = gpu.results.sort_values("combo_id").reset_index(drop=True)
    b = cpu.results.sort_values("combo_id").reset_index(drop=True)
    pd.testing.assert_frame_equal(a, b)


def test_a_bad_register_cap_is_one_error_before_any_device_runs(bars, config_dir, monkeypatch):
    """Not a failure of each device in turn, its combos handed on to the CPU."""
    from threadx.settings_file import GPU_REGISTERS_ENV

    monkeypatch.setenv(GPU_REGISTERS_ENV, "lots")
    with pytest.raises(ValueError, match=f"{GPU_REGISTERS_ENV} is a whole number"):
        _executor(bars, devices=[A100, H100])
