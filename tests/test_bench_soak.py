"""`jointspace bench soak`, short: a few seconds of mixed load from two client processes against a
real `jointspace serve` process, a rebuild in the middle, a restart and the write checks. This
checks that the command works and reports every figure; the 10-minute figures are in
docs/benchmarks.md. Then the checker itself: it must notice writes that are not served."""

from __future__ import annotations

import numpy as np
import pytest

from jointspace.bench import soak


@pytest.mark.slow
def test_short_soak_passes_and_reports_every_figure(tmp_path):
    result = soak.run(seconds=4, clients=2, rows=2_000, work=tmp_path)
    assert result["passed"], (result["failures"], result["first_unexpected"])
    assert set(result["requests"]) == set(soak.MIX) and result["errors"]["unexpected"] == {}
    assert set(result["errors"]["expected"]) <= {"Delete NOT_FOUND"}
    assert all(0 < f["p50_ms"] <= f["p99_ms"] <= f["max_ms"] for f in result["latency"].values())
    assert result["acknowledged_writes"]["upsert"] > 0
    assert result["rebuild"]["state"] == "SUCCEEDED"
    before, after = result["check_before_restart"], result["check_after_restart"]
    assert before["live"] > 0 and before["keys_checked"] == after["keys_checked"]
    assert before["lost"] == after["lost"] == 0
    assert before["generation"] == after["generation"] == result["rebuild"]["generation"]
    assert after["stop_exit_code"] == 0  # SIGTERM: a graceful stop
    rss = result["server_rss_mb"]
    assert 0 < rss["loaded"] and max(rss["start"], rss["middle"], rss["end"]) <= rss["peak"]
    assert result["command"].startswith("jointspace bench soak --seconds 4 --clients 2")
    assert soak.format_summary(result).endswith("PASSED")


def test_the_check_reports_writes_that_are_not_served(built, server):
    """A key said to be upserted that the server lacks, a key said to be deleted that it
    serves, a wrong write served for a key, and a vector count that does not add up."""
    unit = np.eye(16, dtype=np.float32)
    expected = {"live": {"soak:ghost": (unit[1], 7)}, "deleted": {"vec:unit": unit[0]}, "uncertain": 0}
    result = soak._check(server, expected, catalog_vectors=1)
    assert result["lost"] == 3, result["first_lost"]
    assert any("soak:ghost" in line for line in result["first_lost"])
    assert any("vec:unit: deleted, still served" in line for line in result["first_lost"])
    stale = {"live": {"vec:unit": (unit[0], 3)}, "deleted": {}, "uncertain": 0}
    [line] = soak._check(server, stale, catalog_vectors=0)["first_lost"]
    assert "vec:unit: serves write None, not the last one (3)" in line
