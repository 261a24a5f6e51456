"""Per-stage statistics in bounded memory: exact for short runs, within 0.5% for long ones."""

from __future__ import annotations

import numpy as np
import pytest

from segrefine_edge.timing import RSS_SERIES, StageStats, StageTimer


def test_short_runs_get_exact_quantiles():
    stats = StageStats()
    values = np.random.default_rng(0).gamma(4.0, 5.0, 500)
    for v in values:
        stats.add(float(v))
    assert stats.quantile(0.5) == pytest.approx(np.percentile(values, 50))
    assert stats.quantile(0.95) == pytest.approx(np.percentile(values, 95))
    assert stats.mean() == pytest.approx(values.mean())


def test_long_runs_keep_bounded_memory_and_quantiles_within_half_a_percent():
    stats = StageStats()
    values = np.random.default_rng(1).lognormal(3.0, 0.5, 50_000)
    for v in values:
        stats.add(float(v))
    assert len(stats.recent) == StageStats.WINDOW and stats.count == 50_000
    for q in (0.5, 0.95):
        assert stats.quantile(q) == pytest.approx(np.percentile(values, 100 * q), rel=0.006)
    assert stats.mean() == pytest.approx(values.mean())


def test_the_timer_summary_and_the_rss_series_stay_bounded():
    timer = StageTimer()
    for frame in range(5_000):
        timer.add_all({"segment": 10.0 + frame % 7, "refine": 3.0})
        timer.frame_done()
        if timer.frames % 10 == 0:
            timer.record_peak_rss()
    summary = timer.summary()
    assert summary["frames"] == 5_000 and set(summary["stages"]) == {"segment", "refine"}
    assert summary["stages"]["refine"]["p50_ms"] == pytest.approx(3.0, rel=0.006)
    series = summary["peak_rss_mb_by_frame"]
    assert len(series) <= RSS_SERIES + 1 and min(series) == 10 and max(series) == 5_000
    assert summary["rss_mb_by_frame"].keys() == series.keys() and 0 < summary["rss_mb_by_frame"][10] <= series[10]
    assert len(timer.samples("segment")) == StageStats.WINDOW
