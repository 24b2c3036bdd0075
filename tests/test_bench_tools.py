"""`jointspace bench frontend`, `bench answers` and `bench rebuild` at tiny sizes, through the CLI: the reports are
complete and their figures sane (positive rates, a ratio that is the ratio of the rates, parity,
no failed query). How fast anything is belongs to the full-size commands, not to a test."""

from __future__ import annotations

import json

import pytest

from jointspace.cli import main


def _report(capsys: pytest.CaptureFixture[str], *args: str) -> dict:
    assert main(["bench", *args]) == 0
    return json.loads(capsys.readouterr().out)


def test_bench_frontend_reports_both_rates_their_ratio_and_parity(capsys):
    report = _report(capsys, "frontend", "--clips", "8", "--batch", "4", "--passes", "2")
    assert (report["clips"], report["batch"], report["passes"]) == (8, 4, 2)
    graph, librosa = report["graph_clips_per_second"], report["librosa_clips_per_second"]
    assert graph > 0 and librosa > 0
    assert report["speedup"] == pytest.approx(graph / librosa, rel=0.01)  # the rates are rounded
    # The same log-mel from both: float32 rounding apart, where a wrong window or mel bank differs by whole units.
    assert 0 <= report["max_abs_log_mel_difference"] < 1e-3
    assert 0.1 < report["mean_clip_seconds"] < 5  # spoken digits
    assert report["config"]["sample_rate"] == 16000


def _assert_window(window: dict) -> None:
    assert window["queries"] > 0 and window["failed"] == 0
    assert 0 < window["p50_ms"] <= window["p99_ms"] <= window["max_ms"]


@pytest.mark.slow
def test_bench_answers_times_both_ways_of_building_the_same_answers(capsys):
    """The command refuses to time two ways that answer differently (it compares the messages
    they parse into), so a report is also a check of the array path at these sizes."""
    report = _report(capsys, "answers", "--batches", "3,70", "--k", "12", "--passes", "1", "--json")
    assert [(row["batch"], row["hits"]) for row in report["rows"]] == [(3, 36), (70, 840)]
    for row in report["rows"]:
        assert row["messages_us"] > 0 and row["arrays_us"] > 0
        assert row["arrays_vs_messages"] == pytest.approx(row["arrays_us"] / row["messages_us"], rel=0.01)
    cheaper = [row["hits"] for row in report["rows"] if row["arrays_vs_messages"] < 1]
    assert report["arrays_cheaper_from_hits"] == (min(cheaper) if cheaper else None)


def test_bench_rebuild_swaps_under_load_without_a_failed_query(built, tmp_path, capsys):
    report = _report(capsys, "rebuild", "--model", str(built.model), "--rows", "2000", "--seconds", "1",
                     "--work", str(tmp_path))
    assert (report["rows"], report["dim"], report["index"]) == (2000, 16, "auto")
    assert report["catalog_mb"] > 0 and report["local_build_seconds"] > 0
    for rebuild in (report, report["under_load"]):
        assert rebuild["rebuild_and_swap_seconds"] >= 0
        assert rebuild["phase_seconds"] and all(s >= 0 for s in rebuild["phase_seconds"].values())
    assert report["failed_queries"] == 0 and report["first_errors"] == []
    for name in ("before", "around_swap", "after"):  # a window of a second or more each
        _assert_window(report["queries"][name])
    assert report["queries"]["during_rebuild"]["failed"] == 0
    assert (tmp_path / "index" / "CURRENT").read_text().strip() == "gen-000003"  # built, then rebuilt twice
