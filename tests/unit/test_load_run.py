"""The load run's pure parts: pacing, the time series, the summary and verdict, the tables."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from typing import Any

import pytest
from rich.console import Console

SCRIPT = Path(__file__).resolve().parents[2] / "benchmarks" / "load_run.py"


def _load() -> Any:
    spec = importlib.util.spec_from_file_location("load_run", SCRIPT)
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules["load_run"] = module  # dataclasses look their module up
    saved = list(sys.path)
    try:
        spec.loader.exec_module(module)
    finally:
        sys.path[:] = saved  # the script puts benchmarks/ first; other tests need not see it
    return module


load_run = _load()


def sample(t: float, offered: int, logged: int, rss: float = 100.0, cpu: float = 50.0) -> Any:
    """A sample with the CPU figures all `cpu`."""
    return load_run.Sample(t, offered, logged, rss, cpu, cpu, cpu)


def steady(seconds: int, rate: int, logged_rate: int, rss_per_s: float = 0.0) -> list[Any]:
    """One sample a second of a steady offer, logging at `logged_rate` (never ahead)."""
    return [
        sample(
            t + 0.001,
            rate * t,
            min(rate * t, logged_rate * t),
            100.0 + rss_per_s * t,
        )
        for t in range(1, seconds + 1)
    ]


def run_facts(**changes: Any) -> Any:
    """RunFacts of a clean 30-second offer, with `changes`."""
    values: dict[str, Any] = {
        "target_rate": 1_000.0,
        "target_seconds": 30.0,
        "offer": load_run.OfferDone(30_000, 30.0, 0.1),
        "drained": True,
        "rss_idle_mb": 90.0,
        "bare_rate": 10_000.0,
        "replay": load_run.Replayed(
            0, honest=True, decisions_recorded=5, decisions_rederived=5, balanced=True
        ),
        "service_exit": 0,
    }
    values.update(changes)
    return load_run.RunFacts(**values)


def text_of(table: Any) -> str:
    """The table as plain text, wide enough that no cell wraps."""
    console = Console(record=True, width=240, color_system=None)
    console.print(table)
    return console.export_text()


def test_nothing_is_due_before_the_clock_starts() -> None:
    """At or before t = 0 no record is due."""
    assert load_run.due(0.0, 30_000, 100) == 0
    assert load_run.due(-1.0, 30_000, 100) == 0


def test_records_fall_due_at_the_rate_up_to_the_total() -> None:
    """floor(elapsed x rate) records are due, never more than the offer holds."""
    assert load_run.due(0.5, 30_000, 1_000_000) == 15_000
    assert load_run.due(1.0001, 3, 10) == 3
    assert load_run.due(100.0, 30_000, 1_000) == 1_000


def test_the_wait_is_until_the_next_record_is_due_and_never_negative() -> None:
    """Record n (0-based) is due at (n + 1) / rate; a late one is sent at once."""
    assert load_run.wait_before(0, 10.0, 0.0) == pytest.approx(0.1)
    assert load_run.wait_before(9, 10.0, 0.5) == pytest.approx(0.5)
    assert load_run.wait_before(9, 10.0, 2.0) == 0.0


def test_a_late_sender_catches_up_rather_than_skipping() -> None:
    """After a stall every record due so far is due at once: the offered count is not cut."""
    assert load_run.due(2.0, 1_000, 10_000) - load_run.due(0.5, 1_000, 10_000) == 1_500


def test_lag_is_offered_minus_logged() -> None:
    """A sample's lag is what was offered and is not in the log yet."""
    assert sample(1.0, 500, 120).lag == 380


def test_windows_cut_the_run_into_rates_per_window() -> None:
    """Each window's rates are its growth over its span; lag and RSS are at its end."""
    samples = steady(25, 1_000, 800, rss_per_s=2.0)
    rows = load_run.windows(samples, 10.0)
    assert [(round(w.start), round(w.end)) for w in rows] == [(0, 10), (10, 20), (20, 25)]
    assert rows[0].offered_rate == pytest.approx(1_000, rel=1e-3)
    assert rows[1].logged_rate == pytest.approx(800, rel=1e-3)
    assert rows[1].lag == 200 * 20
    assert rows[2].rss_mb == pytest.approx(150.0)


def test_a_sample_a_hair_past_a_boundary_ends_the_window_before() -> None:
    """Samples land a little after each whole second; the 10.001 s one closes window 0-10."""
    rows = load_run.windows([sample(5.001, 5, 5), sample(10.001, 10, 10), sample(11.0, 11, 11)])
    assert [round(w.end) for w in rows] == [10, 11]


def test_no_samples_make_no_windows() -> None:
    """An empty run has an empty time series."""
    assert load_run.windows([]) == []


def test_slope_is_the_least_squares_fit() -> None:
    """Points on y = 3x + 1 give 3; a single point, or one x, gives 0."""
    assert load_run.slope([(0, 1), (1, 4), (2, 7)]) == pytest.approx(3.0)
    assert load_run.slope([(1, 1)]) == 0.0
    assert load_run.slope([(2, 1), (2, 5)]) == 0.0


def test_summary_of_a_run_that_keeps_up() -> None:
    """A service logging as fast as it is offered: small lag, rates held, flat memory, a pass."""
    summary = load_run.summarize(steady(32, 1_000, 1_000), run_facts())
    assert summary.offered_rate == pytest.approx(1_000)
    assert summary.logged_rate_offer == pytest.approx(1_000, rel=1e-3)
    assert summary.window_min == pytest.approx(1_000, rel=1e-3)
    assert summary.window_max == pytest.approx(1_000, rel=1e-3)
    assert summary.lag_max == 0
    assert summary.rss_slope_mb_per_million == pytest.approx(0.0)
    assert summary.ratio == pytest.approx(summary.logged_rate_run / 10_000)
    assert summary.passed


def test_summary_of_a_run_that_falls_behind_and_drains() -> None:
    """Lag grows during the offer, is largest at its end, and the drain time is counted from it."""
    during = steady(30, 1_000, 800, rss_per_s=1.0)
    drain = [sample(30.001 + t, 30_000, min(30_000, 24_000 + 2_000 * t), 130.0) for t in (1, 2, 3)]
    summary = load_run.summarize(during + drain, run_facts())
    assert summary.lag_at_offer_end == 6_000
    assert summary.lag_max == 6_000
    assert summary.drain_seconds == pytest.approx(3.001, abs=1e-3)
    assert summary.logged_rate_drain == pytest.approx(2_000, rel=1e-3)
    assert summary.rss_warm_mb == pytest.approx(110.0)
    assert summary.rss_max_mb == pytest.approx(130.0)
    assert summary.rss_slope_mb_per_million > 0
    assert not summary.held  # 800 of 1,000 a second
    assert not summary.lag_bounded  # 6,000 records: 6 s of a 1,000/s offer
    assert not summary.passed


def test_rss_slope_is_in_mb_per_million_records_logged() -> None:
    """1 MB more per 1,000 records logged is 1,000 MB per million."""
    samples = [sample(t + 0.001, 1_000 * t, 1_000 * t, 100.0 + t) for t in range(1, 31)]
    summary = load_run.summarize(samples, run_facts())
    assert summary.rss_slope_mb_per_million == pytest.approx(1_000.0)


@pytest.mark.parametrize(
    ("changes", "passed"),
    [
        ({}, True),
        ({"drained": False}, False),
        ({"replay": load_run.Replayed(1, honest=False, decisions_recorded=5)}, False),
        (
            {
                "replay": load_run.Replayed(
                    0, honest=True, decisions_recorded=5, decisions_rederived=4
                )
            },
            False,
        ),
    ],
)
def test_the_verdict_needs_a_drain_and_verified_decisions(
    changes: dict[str, Any], *, passed: bool
) -> None:
    """PASS only when the lag reached 0 in time and the replay re-derived every decision."""
    summary = load_run.summarize(steady(30, 1_000, 1_000), run_facts(**changes))
    assert summary.passed is passed


def test_replayed_reads_the_replay_document() -> None:
    """The counts, the differences and the money come from `reconciler replay --format json`."""
    document = {
        "honest": True,
        "decisions_recorded": 7,
        "decisions_rederived": 7,
        "differences": [],
        "facts": 100,
        "balanced": True,
        "money": {"debited": 10, "kept": 6, "refunded": 4},
    }
    replayed = load_run.Replayed.of(0, document, 1.5)
    assert replayed.verified
    assert replayed.money == {"debited": 10, "kept": 6, "refunded": 4}
    assert not load_run.Replayed.of(0, document | {"differences": [{}]}, 1.5).verified
    assert not load_run.Replayed.of(2, None, 1.5).verified


def test_the_summary_table_shows_the_figures_and_the_verdict() -> None:
    """Target and achieved rates, lag, RSS, the replay's counts and PASS are all printed."""
    summary = load_run.summarize(steady(30, 1_000, 1_000), run_facts())
    text = text_of(load_run.summary_table(summary))
    assert "1,000/s for 30 s" in text
    assert "30,000 records in 30.0 s" in text
    assert "5 of 5 re-derived" in text
    assert "PASS" in text


def test_a_failed_run_prints_fail_and_names_the_timeout() -> None:
    """A drain that timed out says so, and the verdict is FAIL."""
    summary = load_run.summarize(steady(30, 1_000, 500), run_facts(drained=False))
    text = text_of(load_run.summary_table(summary))
    assert "TIMED OUT" in text
    assert "FAIL" in text


def test_the_series_table_has_a_row_per_window() -> None:
    """One row per window, with its span, rates and lag."""
    rows = load_run.windows(steady(20, 1_000, 1_000))
    text = text_of(load_run.series_table(rows))
    assert "0-10" in text
    assert "10-20" in text
    assert text.count("1,000") >= 4


def test_service_env_options_are_name_value_pairs() -> None:
    """--service-env NAME=VALUE reaches the service's environment; the defaults are the plan's."""
    options = load_run.parse_options(["--service-env", "RECONCILER_X=1=2", "--seconds", "5"])
    assert options.service_env == {"RECONCILER_X": "1=2"}
    assert options.seconds == 5.0
    assert options.rate == load_run.RATE
    with pytest.raises(SystemExit):
        load_run.parse_options(["--service-env", "NOVALUE"])


@pytest.mark.parametrize(
    ("logged_rate", "rss_per_s", "held", "bounded", "flat"),
    [
        (1_000, 0.0, True, True, True),
        (960, 0.0, True, True, True),  # 96% held; lag 1,200 of a 5,000 bound
        (900, 0.0, False, True, True),  # lag 3,000 still within 5 s of the offer
        (800, 0.0, False, False, True),  # lag 6,000: past 5 s of the offer
        (1_000, 0.5, True, True, False),  # 500 MB per million records
    ],
)
def test_the_verdict_needs_throughput_held_lag_bounded_and_memory_flat(
    logged_rate: int, rss_per_s: float, *, held: bool, bounded: bool, flat: bool
) -> None:
    """Issue 8's three load criteria are each judged, and each one failing fails the run."""
    summary = load_run.summarize(steady(30, 1_000, logged_rate, rss_per_s=rss_per_s), run_facts())
    assert (summary.held, summary.lag_bounded, summary.memory_flat) == (held, bounded, flat)
    assert summary.passed is (held and bounded and flat)
