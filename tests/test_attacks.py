"""Requests crafted against a server confined to a data directory (issue 28), through real gRPC:
odd filter field names, path components too long for the file system, index types the builder
cannot use, catalog audio outside the data directory, huge keys and metadata, calls that ask for
unbounded work, and long input echoed back. Each is refused with a status a client can act on and
a short message without the server's paths; the index stays as it was and the server serves on."""

from __future__ import annotations

import json

import grpc
import numpy as np
import pytest
from google.longrunning import operations_pb2
from google.protobuf import struct_pb2

from attack_data import DIM, ODD_FIELDS, UNITS, attacked_server
from jointspace.client import OperationState
from jointspace.v1 import jointspace_pb2 as pb

INVALID = grpc.StatusCode.INVALID_ARGUMENT
EXHAUSTED = grpc.StatusCode.RESOURCE_EXHAUSTED
DENIED = grpc.StatusCode.PERMISSION_DENIED
PRECONDITION = grpc.StatusCode.FAILED_PRECONDITION
NOT_FOUND = grpc.StatusCode.NOT_FOUND
WORDS = ["word:one", "word:three", "word:two"]
TOO_LONG = "n" * 300  # over the 255 bytes a file name may have


@pytest.fixture(scope="module")
def attacked(built, tmp_path_factory):
    with attacked_server(built, tmp_path_factory.mktemp("attacks")) as served:
        yield served


def _search(**fields) -> pb.SearchRequest:
    return pb.SearchRequest(query=pb.Query(vector=pb.Vector(values=UNITS[1])), k=5, **fields)


def _filter(field: str, value: str = "b") -> pb.MetadataFilter:
    return pb.MetadataFilter(field=field, any_of=[struct_pb2.Value(string_value=value)])


def _upsert(key: str, metadata: dict | None = None) -> pb.UpsertRequest:
    entry = pb.CatalogEntry(key=key, vector=pb.Vector(values=UNITS[2]))
    entry.metadata.update(metadata or {})
    return pb.UpsertRequest(entries=[entry])


def _write_rows(attacked, name: str, rows: list[dict]) -> str:
    (attacked.root / name).write_text("".join(json.dumps(row) + "\n" for row in rows))
    return name


# --- filter fields (item 2) ---------------------------------------------------------------------

@pytest.mark.parametrize("field", sorted(ODD_FIELDS))
def test_odd_filter_field_names_match_in_the_index_and_in_online_changes(attacked, field):
    value = ODD_FIELDS[field]
    assert sorted(h.key for h in attacked.client.search(text="one", k=10, filters={field: value})) == WORDS
    attacked.client.upsert([{"key": "odd:new", "vector": UNITS[3].tolist(), "metadata": {field: value}}])
    try:
        found = attacked.client.search(text="one", k=10, filters={field: value})
        assert sorted(h.key for h in found) == ["odd:new", *WORDS]
    finally:
        attacked.client.delete(["odd:new"])


@pytest.mark.parametrize("field", ["nul\x00field", "\x00", "back\\slash\x00", "x" * 5000 + "\x00"])
def test_filter_field_names_with_nul_are_invalid(attacked, field):
    stub = attacked.client.stub
    attacked.refused(lambda: stub.Search(_search(filters=[_filter(field)]), timeout=30), [INVALID],
                     "filters[0].field", "NUL")
    batch = pb.BatchSearchRequest(requests=[_search(), _search(filters=[_filter("digit"), _filter(field)])])
    attacked.refused(lambda: stub.BatchSearch(batch, timeout=30), [INVALID], "requests[1].filters[1].field", "NUL")


def test_filters_on_names_no_entry_has_cost_no_scan_and_no_memory(attacked):
    """Each field name is scanned once per generation and kept; a name from a request that no
    entry has must not be, or requests could fill the memory with names."""
    fields = attacked.engine.served.generation.fields
    kept = len(fields._built)
    for i in range(50):
        request = _search(filters=[_filter(f"unknown-{i}-" + "u" * 1_000)], modalities=["text"])
        assert not attacked.client.stub.Search(request, timeout=30).hits
    assert len(fields._built) == kept
    many = [_filter(f"f{i}") for i in range(65)]
    attacked.refused(lambda: attacked.client.stub.Search(_search(filters=many), timeout=30), [EXHAUSTED],
                     "filters: 65 filters", "max_filters")


# --- long path components (item 3) --------------------------------------------------------------

@pytest.mark.parametrize("request_fields, field", [
    ({"catalog_paths": [TOO_LONG + ".jsonl"]}, "catalog_paths[0]"),
    ({"catalog_paths": ["catalog.jsonl", f"clips/{TOO_LONG}/catalog.jsonl"]}, "catalog_paths[1]"),
    ({"catalog_paths": ["/".join(["p" * 200] * 30)]}, "catalog_paths[0]"),
    ({"catalog_paths": ["catalog.jsonl"], "model_dir": TOO_LONG}, "model_dir"),
    ({"catalog_paths": ["catalog.jsonl"], "validation_pairs": TOO_LONG, "min_recall": 0.5}, "validation_pairs"),
])
def test_path_components_too_long_for_the_file_system_are_invalid(attacked, request_fields, field):
    attacked.failed_rebuild([INVALID], field, "too long", **request_fields)


def test_catalog_audio_with_a_component_too_long_fails_the_rebuild(attacked):
    name = _write_rows(attacked, "long-audio.jsonl", [{"key": "a:1", "audio": f"clips/{TOO_LONG}.wav"}])
    attacked.failed_rebuild([INVALID], "long-audio.jsonl:1", "too long", catalog_paths=[name])


# --- index types (item 4) -----------------------------------------------------------------------

# One or more of every FAISS factory family the builder cannot use: ids supplied by a wrapper,
# encodings whose search takes no selector (so exclusions and deletions could not work), refine
# stages, lattices, row-wise min-max, binary indexes, malformed strings, and training that the
# catalog's few vectors cannot satisfy.
UNUSABLE_INDEX_TYPES = [
    "IDMap,Flat", "IDMap2,Flat", "IDMap,HNSW32", "Flat,IDMap", "IVF2,Flat,IDMap2", "SQ8,IDMap",
    "PQ4", "PQ4np", "PQ4x4fs", "OPQ4,PQ4", "RQ2x4", "LSQ2x4", "PRQ2x2x4", "PLSQ2x2x4", "RQ2x4fs",
    "IVF2,RQ2x4", "IVF2,LSQ2x4", "IVF2,RQ2x4fs", "NSG32,Flat", "NSG8", "Flat,RFlat", "HNSW16,Flat,RFlat",
    "IVF2,PQ4,Refine(SQfp16)", "PQ4,Refine(Flat)", "MinMax,Flat", "MinMaxFP16,SQ8", "ZnLattice2x4_2",
    "LSH", "ITQ16,LSH", "BFlat", "BHNSW32", "BIVF2", "Flat,Flat", "Flat,PQ4", "IVF2", "IVF2,Flat,Flat",
    "nonsense", "IMI2x2,Flat", "PQ3", "IVF4096,Flat", "IVF2,PQ16x12", "HNSW16_PQ4", "auto,Flat", "Flat\x00",
    "x" * 5000,
]


@pytest.mark.parametrize("index_type", UNUSABLE_INDEX_TYPES)
def test_index_types_the_builder_cannot_use_are_refused(attacked, index_type):
    attacked.failed_rebuild([INVALID, PRECONDITION], catalog_paths=["catalog.jsonl"], index_type=index_type)


@pytest.mark.parametrize("index_type", ["flat", "hnsw", "auto", "HNSW16", "HNSW16_SQ8", "SQ8", "SQfp16",
                                        "IVF2,Flat", "IVF2,SQ8", "L2norm,Flat", "RR16,HNSW16", "Pad32,Flat"])
def test_usable_index_types_build_and_answer_excluding_filtered_searches(attacked, index_type):
    finished = attacked.rebuild(catalog_paths=["catalog.jsonl"], index_type=index_type)
    assert finished.state == OperationState.SUCCEEDED, finished
    hits = attacked.client.search(vector=UNITS[1], k=3, modalities=["vector"], exclude=["unit:1"])
    assert "unit:1" not in [h.key for h in hits] and len(hits) == 3
    filtered = attacked.client.search(text="one", k=10, filters={"back\\slash": "b"})
    assert sorted(h.key for h in filtered) == WORDS


@pytest.mark.parametrize("factory", ["Flat", "SQ8", "HNSW8", "HNSW8_SQ8", "HNSW8,PQ4", "IVF4,Flat", "IVF4_HNSW8,SQ8",
                                     "IVF4,PQ4x4np", "IVF4,PQ4x4fs", "IVF4,PQ4x4fsr", "PCAR8,IVF4,Flat",
                                     "OPQ4_16,IVF4,PQ4", "RR16,Pad32,HNSW8", "L2norm,Flat"])
def test_each_family_the_grammar_allows_searches_with_rows_left_out(factory):
    """Why the grammar is what it is (index_types.py): every family it lets through trains, adds
    rows without ids, searches with a selector (deleted, excluded, filtered rows) and saves."""
    import faiss

    from jointspace.server.index.index_types import build_index
    from jointspace.server.index.searching import nearest

    vectors = np.random.default_rng(0).standard_normal((600, DIM)).astype(np.float32)
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    index = faiss.deserialize_index(faiss.serialize_index(build_index(factory, [str(i) for i in range(600)], vectors)))
    _, hidden = nearest(index, vectors[:5], 5, None, frozenset(range(0, 600, 2)))
    _, allowed = nearest(index, vectors[:5], 5, np.arange(1, 600, 2), frozenset())
    for found in (hidden, allowed):
        assert (found >= 0).all() and (found % 2 == 1).all(), factory


# --- audio paths out of the data directory (item 5) ---------------------------------------------

ESCAPES = {
    "parent": lambda attacked: "../outside/secret.wav",
    "deeper parent": lambda attacked: "clips/../../outside/secret.wav",
    "absolute": lambda attacked: str(attacked.outside / "secret.wav"),
    "proc": lambda attacked: "/proc/self/environ",
    "link": lambda attacked: _link(attacked),
}


def _link(attacked) -> str:
    link = attacked.root / "clips" / "link.wav"
    if not link.is_symlink():
        link.symlink_to(attacked.outside / "secret.wav")
    return "clips/link.wav"


@pytest.mark.parametrize("escape", ESCAPES)
def test_catalog_audio_outside_the_data_dir_is_refused(attacked, escape):
    rows = [{"key": "ok:1", "text": "one"}, {"key": "escape:1", "audio": ESCAPES[escape](attacked)}]
    name = _write_rows(attacked, f"escape-{escape.replace(' ', '-')}.jsonl", rows)
    attacked.failed_rebuild([DENIED], f"{name}:2", "audio", "outside the server's data directory",
                            catalog_paths=[name])


def test_validation_audio_outside_the_data_dir_is_refused(attacked):
    name = _write_rows(attacked, "escape-pairs.jsonl", [{"key": "word:one", "audio": "../outside/secret.wav"}])
    attacked.failed_rebuild([DENIED], f"{name}:1", "outside the server's data directory",
                            catalog_paths=["catalog.jsonl"], validation_pairs=name, min_recall=0.1)


# --- key and metadata sizes (item 7) ------------------------------------------------------------

@pytest.mark.parametrize("key", ["k" * 1025, "é" * 513, "k" * (3 << 20)])
def test_upserted_keys_over_the_limit_are_refused(attacked, key):
    stub = attacked.client.stub
    attacked.refused(lambda: stub.Upsert(_upsert(key), timeout=30), [EXHAUSTED], "entries[0].key", "max_key_bytes")
    # No such key is served (an index built before the limit may hold one: it stays deletable).
    attacked.refused(lambda: stub.Delete(pb.DeleteRequest(keys=["unit:1", key]), timeout=30), [NOT_FOUND])


def test_upserted_metadata_over_the_limit_is_refused(attacked):
    stub = attacked.client.stub
    request = _upsert("meta:big", {"blob": "x" * (64 << 10)})
    attacked.refused(lambda: stub.Upsert(request, timeout=30), [EXHAUSTED], "entries[0].metadata",
                     "max_metadata_bytes")


def test_keys_and_metadata_at_the_limits_are_served(attacked):
    key, metadata = "k" * 1024, {"blob": "x" * ((64 << 10) - 20)}
    assert attacked.client.stub.Upsert(_upsert(key, metadata), timeout=30).upserted == 1
    try:
        [hit] = attacked.client.search(vector=UNITS[2], k=1, modalities=["vector"], filters={"blob": metadata["blob"]})
        assert (hit.key, hit.metadata) == (key, metadata)
    finally:
        attacked.client.delete([key])


@pytest.mark.parametrize("row, words", [
    ({"key": "k" * 1025, "text": "one"}, ("key", "max_key_bytes")),
    ({"key": "big", "text": "one", "metadata": {"blob": "x" * (64 << 10)}}, ("metadata", "max_metadata_bytes")),
])
def test_catalog_rows_over_the_limits_fail_the_rebuild(attacked, row, words):
    name = _write_rows(attacked, "big-row.jsonl", [{"key": "ok:1", "text": "two"}, row])
    attacked.failed_rebuild([EXHAUSTED], f"{name}:2", *words, catalog_paths=[name])


# --- the work of one call -----------------------------------------------------------------------

def test_one_call_cannot_ask_for_unbounded_work(attacked):
    queries = [pb.SearchRequest(query=pb.Query(vector=pb.Vector(values=UNITS[i % DIM])), k=1_000,
                                exclude_keys=[f"x:{j}" for j in range(50)]) for i in range(1_024)]
    stub = attacked.client.stub
    attacked.refused(lambda: stub.BatchSearch(pb.BatchSearchRequest(requests=queries), timeout=60), [EXHAUSTED],
                     "requests", "max_search_work")


def test_ordinary_calls_fit_the_work_budget(attacked):
    queries = [pb.SearchRequest(query=pb.Query(vector=pb.Vector(values=UNITS[i % DIM])), k=10,
                                exclude_keys=[f"unit:{(i + 1) % DIM}"]) for i in range(1_024)]
    answer = attacked.client.stub.BatchSearch(pb.BatchSearchRequest(requests=queries), timeout=60)
    assert all(len(result.hits) == 10 for result in answer.results)
    excluded = [f"x:{j}" for j in range(10_000)]
    assert len(attacked.client.search(vector=UNITS[0], k=1_000, exclude=excluded)) > DIM


# --- messages -----------------------------------------------------------------------------------

def test_long_input_is_quoted_by_a_short_prefix(attacked):
    stub, long = attacked.client.stub, "x" * 16_000
    attacked.refused(lambda: stub.Search(pb.SearchRequest(query=pb.Query(id=long), k=3), timeout=30),
                     [NOT_FOUND, INVALID])
    operations = attacked.client.operations_stub
    attacked.refused(lambda: operations.GetOperation(operations_pb2.GetOperationRequest(name=long), timeout=30),
                     [NOT_FOUND])
    attacked.refused(lambda: stub.Search(_search(modalities=[long]), timeout=30), [INVALID])
    attacked.failed_rebuild([INVALID, PRECONDITION], catalog_paths=["catalog.jsonl"], index_type=long)
    attacked.failed_rebuild([INVALID, NOT_FOUND], catalog_paths=[long[:250]])


def test_failed_operations_do_not_show_server_paths(attacked):
    name = _write_rows(attacked, "bad.jsonl", [{"key": "ok:1", "text": "one"}, {"text": "no key"}])
    attacked.failed_rebuild([INVALID], f"{name}:2", "key", catalog_paths=[name])
    attacked.failed_rebuild([INVALID, NOT_FOUND], "clips", catalog_paths=["catalog.jsonl"], model_dir="clips")
    pairs = _write_rows(attacked, "bad-pairs.jsonl", [{"key": "word:one"}])
    attacked.failed_rebuild([INVALID], f"{pairs}:1", catalog_paths=["catalog.jsonl"], validation_pairs=pairs,
                            min_recall=0.1)


def test_the_server_still_serves_the_index_after_the_attacks(attacked):
    attacked.client.wait_ready()
    assert attacked.client.search(vector=UNITS[5], k=1)[0].key == "unit:5"
    assert np.isclose(attacked.client.search(vector=UNITS[5], k=1)[0].score, 1.0, atol=1e-4)
