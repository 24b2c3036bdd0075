"""`bench scale` at the smallest sizes: the report's shape, and figures that agree with each other
(the figures themselves are measured by running the command, docs/scaling.md)."""

from __future__ import annotations

from jointspace.bench import scale
from test_cli import assert_one_line_error, jointspace

DIM = 8
SIZES = [1_500, 3_000]


def test_index_costs_per_size_and_type_agree_with_each_other():
    kinds = list(scale.index_types(SIZES[0], DIM))
    result = scale.run(SIZES, DIM, kinds, 30, 0.9, [], [DIM], 1, 1, 32)
    rows = result["indexes"]
    assert [(row["vectors"], row["index"]) for row in rows] == [(size, kind) for size in SIZES for kind in kinds]
    for row in rows:
        assert row["build_seconds"] >= 0 and row["file_bytes_per_vector"] > 0 and row["qps_one_thread"] > 0
        assert 0 < row["recall@10"] <= 1
    for size in SIZES:
        by_kind = {row["index"]: row for row in rows if row["vectors"] == size}
        flat = by_kind["flat"]
        assert flat["recall@10"] == 1.0 and flat["search_params"] == {}
        assert 4 * DIM <= flat["file_bytes_per_vector"] < 4 * DIM + 1  # the vectors and a header
        assert by_kind["hnsw"]["file_bytes_per_vector"] > flat["file_bytes_per_vector"]  # links beside vectors
        assert by_kind["ivf_pq"]["file_bytes_per_vector"] < flat["file_bytes_per_vector"]  # codes, not vectors
        assert "efSearch" in by_kind["hnsw"]["search_params"] and "nprobe" in by_kind["ivf_hnsw_pq"]["search_params"]
    assert result["training"] == [] and result["training_bytes_per_id"] == {}
    report = scale.table(result)
    assert all(f"{row['vectors']:,} {row['index']}" in " ".join(report.split()) for row in rows)


def test_training_speed_and_memory_per_id_table_size():
    result = scale.run([], DIM, [], 10, 0.9, [200, 400], [DIM], 2, 1, 32)
    runs = result["training"]
    assert [(row["ids"], row["dim"]) for row in runs] == [(300, DIM), (600, DIM)]
    assert all(row["examples_per_second"] > 0 and row["peak_rss_mb"] > 0 and row["rows"] > 0 for row in runs)
    grown = (runs[1]["peak_rss_mb"] - runs[0]["peak_rss_mb"]) * 2**20 / (runs[1]["ids"] - runs[0]["ids"])
    assert result["training_bytes_per_id"] == {DIM: round(grown, 1)}


def test_unknown_index_types_are_refused_in_one_line():
    assert_one_line_error(jointspace("bench", "scale", "--indexes", "flat,lsh"), "--indexes", "lsh", "ivf_pq")
