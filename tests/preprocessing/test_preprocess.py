"""Blocked preprocessing equals whole-recording processing, and the filters do what they claim."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from neurocare_bids.config import PreprocessingConfig
from neurocare_bids.preprocessing.filters import RunningStats, design_plan, iter_blocks, process_block


def _signal(n_channels, n, seed=0):
    rng = np.random.default_rng(seed)
    return rng.standard_normal((n_channels, n)).cumsum(axis=1) * 0.2 + rng.standard_normal((n_channels, n)) * 5


def _whole(x, plan):
    return process_block(lambda s, e: x[:, s:e], x.shape[1], plan, 0, plan.n_out(x.shape[1]))


@pytest.mark.parametrize("sfreq", [100.0, 128.0, 173.61, 200.0, 250.0, 256.0, 512.0, 1000.0, 2048.0])
def test_blocks_equal_whole_recording(sfreq):
    plan = design_plan(sfreq, PreprocessingConfig(), None)
    x = _signal(3, int(sfreq * 600), seed=int(sfreq))
    whole = _whole(x, plan)
    blocked = np.concatenate([b for _, b in iter_blocks(lambda s, e: x[:, s:e], x.shape[1], plan, 128 * 45)],
                             axis=1)
    assert blocked.shape == whole.shape == (3, plan.n_out(x.shape[1]))
    np.testing.assert_allclose(blocked, whole, rtol=0, atol=1e-7 * np.abs(whole).max())


@settings(max_examples=25, deadline=None)
@given(n_seconds=st.integers(20, 400), block=st.integers(10, 7000), seed=st.integers(0, 1000),
       sfreq=st.sampled_from([128.0, 200.0, 256.0, 512.0]))
def test_any_block_size_equals_whole(n_seconds, block, seed, sfreq):
    plan = design_plan(sfreq, PreprocessingConfig(), None)
    x = _signal(2, int(sfreq * n_seconds), seed)
    whole = _whole(x, plan)
    blocked = np.concatenate([b for _, b in iter_blocks(lambda s, e: x[:, s:e], x.shape[1], plan, block)],
                             axis=1)
    np.testing.assert_allclose(blocked, whole, rtol=0, atol=1e-7 * np.abs(whole).max())


def _gain(freq, sfreq_in, line=50.0, seconds=120):
    plan = design_plan(sfreq_in, PreprocessingConfig(), line)
    t = np.arange(int(sfreq_in * seconds)) / sfreq_in
    y = _whole(np.sin(2 * np.pi * freq * t)[None, :], plan)[0]
    core = y[len(y) // 4: -len(y) // 4]
    return np.sqrt(2 * np.mean(core**2))


@pytest.mark.parametrize("sfreq_in", [256.0, 512.0, 250.0])
def test_frequency_response(sfreq_in):
    assert _gain(10.0, sfreq_in) == pytest.approx(1.0, abs=0.01)  # in band
    assert _gain(3.0, sfreq_in) == pytest.approx(1.0, abs=0.01)
    assert _gain(50.0, sfreq_in) < 1e-3  # mains notch (plus band-pass)
    assert _gain(0.05, sfreq_in, seconds=600) < 0.01  # drift removed
    assert _gain(100.0, sfreq_in) < 1e-3  # above the output Nyquist: must not alias into the band
    assert _gain(118.0, sfreq_in) < 1e-3  # would alias to 10 Hz without the anti-alias filter


def test_notch_skipped_at_nyquist_and_60hz_mains():
    cfg = PreprocessingConfig()
    assert design_plan(100.0, cfg, 50.0).notches == ()
    assert any("skipped" in note for note in design_plan(100.0, cfg, 50.0).notes)
    assert design_plan(512.0, cfg, 60.0).notches == (60.0,)
    assert design_plan(512.0, PreprocessingConfig(sfreq=256.0, h_freq=100.0), 50.0).notches == (50.0, 100.0)
    assert design_plan(512.0, PreprocessingConfig(notch=False), 50.0).notches == ()


def test_running_stats_match_numpy():
    x = np.random.default_rng(3).standard_normal((4, 10000)) * [[1], [2], [3], [1e-3]] + 1e3
    stats = RunningStats(4)
    for start in range(0, 10000, 777):
        stats.update(x[:, start:start + 777])
    np.testing.assert_allclose(stats.mean, x.mean(axis=1), rtol=1e-12)
    np.testing.assert_allclose(stats.std, x.std(axis=1), rtol=1e-9)


@pytest.mark.parametrize("sfreq_in", [512.0, 250.0, 100.0])
def test_resampling_leaves_the_band_pass_response_unchanged(sfreq_in):
    """Up to the 30 Hz edge the whole chain has exactly the zero-phase Butterworth's gain |H(f)|²."""
    from scipy import signal

    cfg = PreprocessingConfig()
    plan = design_plan(sfreq_in, cfg, 50.0)
    for freq in (1.0, 8.0, 20.0, 28.0, 30.0):
        _, response = signal.sosfreqz(plan.sos, worN=[freq], fs=cfg.sfreq)
        assert _gain(freq, sfreq_in) == pytest.approx(abs(response[0]) ** 2, abs=2e-3)


# ---------------------------------------------------------------------- causal filtering (preprocessing.causal)
def _causal(sfreq_in, **cfg):
    return design_plan(sfreq_in, PreprocessingConfig(causal=True, **cfg), 50.0)


@pytest.mark.parametrize("sfreq_in", [128.0, 256.0, 250.0])
def test_causal_filters_need_no_later_signal(sfreq_in):
    """An impulse at input sample k changes no output before k (only the resampling FIR, when the rate changes,
    reaches its few taps ahead); zero-phase filters respond long before k."""
    n = int(sfreq_in * 120)
    k = n // 2
    x = np.zeros((1, n))
    x[0, k] = 1.0
    plan = _causal(sfreq_in)
    assert plan.lookahead == 0 and plan.margin > 0
    y = _whole(x, plan)[0]
    first = np.flatnonzero(y)[0]
    reach = 0 if plan.fir is None else plan.fir_margin_in * plan.up / plan.down
    assert k * plan.up / plan.down - reach <= first <= k * plan.up / plan.down + 1
    assert plan.lookahead_seconds() == pytest.approx(reach * plan.down / plan.up / sfreq_in)
    if plan.fir is None:
        assert first == k and plan.lookahead_seconds() == 0
    zero_phase = design_plan(sfreq_in, PreprocessingConfig(), 50.0)
    before = _whole(x, zero_phase)[0][:int((k - sfreq_in) * plan.up / plan.down)]  # a second before the impulse
    assert np.abs(before).max() > 1e-6 and zero_phase.lookahead == zero_phase.margin


@settings(max_examples=15, deadline=None)
@given(n_seconds=st.integers(20, 300), block=st.integers(10, 7000), seed=st.integers(0, 1000),
       sfreq=st.sampled_from([128.0, 200.0, 256.0, 512.0]), offset=st.floats(-500, 500))
def test_causal_blocks_equal_one_shot_filtering(n_seconds, block, seed, sfreq, offset):
    """Block after block with the state carried over (in order, or in parallel threads) gives the one pass over
    the whole recording bit for bit: ``sosfilt`` from the first sample's steady state (no transient from a DC
    offset). A block on its own (no state: the reports' spectra) agrees within float tolerance."""
    from concurrent.futures import ThreadPoolExecutor

    from scipy import signal

    from neurocare_bids.preprocessing.filters import block_bounds, causal_filter
    from neurocare_bids.preprocessing.participant import ordered_map

    plan = _causal(sfreq)
    x = _signal(2, int(sfreq * n_seconds), seed) + offset
    n = x.shape[1]
    whole = _whole(x, plan)
    blocked = np.concatenate([b for _, b in iter_blocks(lambda s, e: x[:, s:e], n, plan, block)], axis=1)
    np.testing.assert_array_equal(blocked, whole)
    state = causal_filter(plan)
    with ThreadPoolExecutor(3) as pool:
        parallel = list(ordered_map(pool, lambda ab: process_block(lambda s, e: x[:, s:e], n, plan, *ab, state),
                                    block_bounds(plan.n_out(n), block), ahead=3))
    np.testing.assert_array_equal(np.concatenate(parallel, axis=1), whole)
    if plan.fir is None:  # no resampling: exactly scipy's forward filter
        zi = signal.sosfilt_zi(plan.sos)[:, None, :] * x[None, :, :1]
        np.testing.assert_array_equal(whole, signal.sosfilt(plan.sos, x, axis=1, zi=zi)[0])
    a = plan.n_out(n) // 2
    alone = process_block(lambda s, e: x[:, s:e], n, plan, a, a + block)
    np.testing.assert_allclose(alone, whole[:, a:a + block], rtol=0, atol=1e-7 * np.abs(whole).max())


def test_a_failed_causal_block_releases_the_blocks_waiting_for_it():
    from concurrent.futures import ThreadPoolExecutor

    from neurocare_bids.preprocessing.filters import causal_filter

    plan = _causal(128.0)
    x = _signal(2, 128 * 60)

    def read(start, stop):
        if start == 0:
            raise OSError("unreadable block")
        return x[:, start:stop]

    state = causal_filter(plan)
    with ThreadPoolExecutor(2) as pool:
        later = pool.submit(process_block, read, x.shape[1], plan, 1280, 2560, state)
        first = pool.submit(process_block, read, x.shape[1], plan, 0, 1280, state)
        with pytest.raises(OSError):
            first.result(timeout=30)
        with pytest.raises(RuntimeError, match="earlier block"):
            later.result(timeout=30)
    state = causal_filter(plan)
    process_block(lambda s, e: x[:, s:e], x.shape[1], plan, 0, 1280, state)
    with pytest.raises(ValueError, match="consecutive"):  # a block filtered twice is a bug, not a wait
        process_block(lambda s, e: x[:, s:e], x.shape[1], plan, 640, 1920, state)


def test_ordered_map_left_early_cancels_the_calls_not_started():
    """``ordered_map`` closed after its first result (a stream closed, a consumer failed) leaves no queued call to
    run for nothing: with one thread and four in flight, the calls beyond the one running never start."""
    import threading
    from concurrent.futures import ThreadPoolExecutor

    from neurocare_bids.preprocessing.participant import ordered_map

    started: list[int] = []
    release = threading.Event()

    def slow(item: int) -> int:
        started.append(item)
        if item > 0:
            release.wait(5)
        return item

    with ThreadPoolExecutor(1) as pool:
        results = ordered_map(pool, slow, iter(range(100)), ahead=4)
        assert next(results) == 0
        results.close()  # items 1..5 were submitted; 1 may be running, the rest are queued
        release.set()
    assert started in ([0], [0, 1])


@settings(max_examples=20, deadline=None)
@given(cuts=st.lists(st.integers(1, 80_000), max_size=12))
def test_channel_watch_reports_the_same_changes_however_the_stream_is_chunked(cuts):
    """A 512-Hz stream (where batch mode's quality pass would sample probes): one channel flat from 20 to 40 s,
    another clipped from 50 to 60 s. Judged on every sample of each 10 s, the changes do not depend on the chunks."""
    from neurocare_bids.preprocessing.quality import ChannelWatch

    sfreq, rng = 512, np.random.default_rng(3)
    data = rng.standard_normal((4, 80 * sfreq)).cumsum(axis=1) * 2.0  # a wandering EEG-like trace, tens of µV
    data[1, 20 * sfreq:40 * sfreq] = 7.0
    rail = np.percentile(np.abs(data[2, 50 * sfreq:60 * sfreq]), 60)
    data[2, 50 * sfreq:60 * sfreq] = np.clip(data[2, 50 * sfreq:60 * sfreq], -rail, rail)
    data[3, 60 * sfreq:70 * sfreq] = 0.1 * rng.standard_normal(10 * sfreq)  # an electrode barely in contact
    whole = ChannelWatch(["a", "b", "c", "d"], sfreq).update(data)
    assert [(c["channel"], c["status"], c["since"]) for c in whole] == [
        ("b", "flat", 20.0), ("b", "ok", 40.0), ("c", "clipped", 50.0), ("c", "ok", 60.0), ("d", "flat", 60.0),
        ("d", "ok", 70.0)]
    # a constant channel is worded as batch mode words it, a weak one by its standard deviation
    assert whole[0]["detail"] == "constant 7 µV: check the electrode"
    assert whole[4]["detail"] == "standard deviation 0.1 µV: check the electrode"
    watch, changes = ChannelWatch(["a", "b", "c", "d"], sfreq), []
    for start, stop in zip([0, *sorted(cuts)], [*sorted(cuts), data.shape[1]]):
        changes += watch.update(data[:, start:stop])
    assert changes == whole
