"""`dmm bench` runs end to end and reports its figures (no timing is asserted: numbers are for reading)."""

from __future__ import annotations

from pathlib import Path

import pytest
from typer.testing import CliRunner

from dmm import bench
from dmm.broker import free_port
from dmm.cli import app
from settings import ClickHouseSettings, KafkaSettings, Settings


def fresh_stack(workdir: Path, partitions: int = 1) -> Settings:
    """A bench's own embedded stack: free ports, the store in `workdir`."""
    return Settings(
        kafka=KafkaSettings(bootstrap=f"127.0.0.1:{free_port()}", events_partitions=partitions),
        clickhouse=ClickHouseSettings(chdb_path=workdir / "chdb"),
        web_port=free_port(),
    )


def test_bench_refuses_a_live_phase_too_short_to_measure_before_it_starts() -> None:
    result = CliRunner().invoke(app, ["bench", "--events", "1000", "--live-seconds", "0"])
    assert result.exit_code == 2  # a usage error, before any broker or worker is started
    assert "Invalid value for '--live-seconds'" in result.output


@pytest.mark.slow
def test_bench_pushes_every_event_through_and_measures_it(tmp_path: Path) -> None:
    settings = fresh_stack(tmp_path)
    result = bench.run(settings, tmp_path, events=3000, live_seconds=3, say=lambda _: None)
    assert result.events == 3000
    assert result.live_events > 0
    assert result.baseline_events_per_s > 0 and result.worker_events_per_s > 0
    assert 0 <= result.lag_p50_ms <= result.lag_p99_ms <= result.lag_max_ms
    assert 0 <= result.publisher_behind_p50_ms <= result.publisher_behind_p99_ms
    # From the moment of publishing, never before it: each event is published at or after its event time.
    assert 0 < result.published_lag_p50_ms <= result.published_lag_p99_ms <= result.published_lag_max_ms
    assert result.published_lag_max_ms <= result.lag_max_ms + 5  # ms: the two clocks are read apart
    assert result.store_write_us_per_event > 0  # the writes' own time, from the worker's histogram
    assert result.worker_cpu_us_per_event > 0
    # The worker's start-up (launch, group join, restore) is reported apart from its sustained rate.
    assert 0 < result.worker_startup_s < result.worker_seconds
    assert result.worker_peak_rss_mb > 0


@pytest.mark.slow
def test_bench_with_two_workers_shares_the_store_and_measures_them_together(tmp_path: Path) -> None:
    settings = fresh_stack(tmp_path, partitions=2)
    result = bench.run(settings, tmp_path, events=3000, live_seconds=3, workers=2, say=lambda _: None)
    assert (result.workers, result.partitions, result.events) == (2, 2, 3000)
    assert result.live_events > 0 and result.worker_events_per_s > 0
    assert sum(result.stages_us_per_event.values()) > 0  # both workers' stage counters, summed


@pytest.mark.slow
def test_bench_signed_measures_a_worker_verifying_every_event_beside_the_unsigned_run(tmp_path: Path) -> None:
    settings = fresh_stack(tmp_path)
    result = bench.run(settings, tmp_path, events=3000, live_seconds=2, signed=True, say=lambda _: None)
    assert result.signed is not None
    assert result.signed.unauthenticated == 0  # every signed event verified and stored: the figures are of them
    assert result.signed.events_per_s > 0 and result.signed.worker_cpu_us_per_event > 0
    assert result.as_dict()["signed_share_of_unsigned"] == round(
        result.signed.events_per_s / result.worker_events_per_s, 4
    )


@pytest.mark.integration  # a real embedded store
def test_restore_bench_restores_every_trade_and_spills_wash_trading_legs_past_the_bound(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("DMM_WASH_TRADING_RAM_LEGS", "1000")  # read by the restoring worker's settings
    result = bench.run_restore(tmp_path, 20_000, say=lambda text: None)
    assert result.trades == 20_000 and result.seconds > 0
    assert set(result.seconds_by_part) == {"progress", "surveillance", "dedup_index", "windows"}
    assert result.wash_trading_legs_in_ram <= 1_000  # the rest went to disk
    assert result.state_disk_mib > 0
    assert result.restart_kept_state == "taken" and result.keep_seconds > 0 and result.restart_seconds > 0
    assert set(result.restart_by_part) == set(result.seconds_by_part)


@pytest.mark.slow
def test_a_soak_samples_the_worker_and_the_store_apart_and_remembers_every_event(tmp_path: Path) -> None:
    """The store in its own process, as in production: the worker's RSS is what the worker keeps."""
    settings = fresh_stack(tmp_path)
    said: list[str] = []
    result = bench.run_soak(settings, tmp_path, rate=400, seconds=12, sample_every_s=0.25, say=said.append)
    assert result.events >= 4_000
    assert result.dedup_index_events == result.events  # every event taken and remembered once
    assert len(result.rss_mib) == len(result.store_rss_mib) >= 30
    assert all(mib > 0 for _, mib in result.rss_mib + result.store_rss_mib)
    assert result.rss_end_mib > 0 and result.store_rss_end_mib > 0
    assert any("store" in line for line in said)


def test_a_soak_fits_its_slope_after_the_windows_fill_and_within_70_percent_of_the_run() -> None:
    """The minute windows are held for the allowed lateness and two minutes more: RSS grows while they fill, by
    design and bounded, so the slope is fitted after (at most 70 % of the run in, so a short soak still has one)."""
    settings = Settings(allowed_lateness_s=300)
    assert bench.soak_warm_up_s(settings, 1800) == 420
    assert bench.soak_warm_up_s(settings, 600) == 420
    assert bench.soak_warm_up_s(settings, 300) == 210
    assert bench.soak_warm_up_s(Settings(allowed_lateness_s=0), 1800) == 120
