"""Generated attacks on a server confined to a data directory (the kinds that issue 28 found by
hand, see test_attacks.py): FAISS factory strings of every family, path components long or odd
in every request field that names a file, audio paths in catalog rows, keys and metadata around
their limits. Every call gets a status a client can act on with a clean message, a rebuild
either goes live with an index that leaves rows out of a search or changes nothing, and the
server keeps serving. Few examples each, derandomized: the suite stays fast and repeatable."""

from __future__ import annotations

import json

import grpc
import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from attack_data import DIM, UNITS, attacked_server
from jointspace.client import OperationState
from jointspace.core.limits import DEFAULT_LIMITS
from jointspace.v1 import jointspace_pb2 as pb

INVALID = grpc.StatusCode.INVALID_ARGUMENT
EXHAUSTED = grpc.StatusCode.RESOURCE_EXHAUSTED
REFUSED = {INVALID, grpc.StatusCode.NOT_FOUND, grpc.StatusCode.PERMISSION_DENIED}
FAILED_BUILD = {INVALID, grpc.StatusCode.FAILED_PRECONDITION, grpc.StatusCode.NOT_FOUND,
                grpc.StatusCode.PERMISSION_DENIED}


def _settings(examples: int) -> settings:
    return settings(max_examples=examples, derandomize=True, database=None, deadline=None,
                    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])


@pytest.fixture(scope="module")
def attacked(built, tmp_path_factory):
    with attacked_server(built, tmp_path_factory.mktemp("fuzz-attacks")) as served:
        yield served


def _rebuild_outcome(attacked, request: pb.RebuildIndexRequest) -> tuple[grpc.StatusCode, str, bool]:
    """(status, message, went live) of a rebuild refused at the call or run to its end; one that
    did not go live changed nothing that is served."""
    before = attacked.snapshot()
    try:
        operation = attacked.client.stub.RebuildIndex(request, timeout=60)
    except grpc.RpcError as error:
        outcome = error.code(), error.details(), False
    else:
        finished = attacked.client.wait(operation.name, poll=0.05)
        live = finished.state == OperationState.SUCCEEDED
        outcome = (grpc.StatusCode.OK, "", True) if live else (finished.error.code, finished.error.message, False)
    event("went live" if outcome[2] else outcome[0].name)  # --hypothesis-show-statistics
    if not outcome[2]:
        attacked.assert_clean(outcome[1])
        attacked.assert_unchanged(before)
    return outcome


# --- FAISS factory strings of every family ------------------------------------------------------

good_numbers = st.sampled_from([1, 2, 4, 8, 16])  # the catalog's 16 dimensions and few vectors fit these
numbers = st.one_of(good_numbers, st.sampled_from([0, 3, 12, 13, 17, 32, 33, 128, 129, 4096, 65_536, 65_537]),
                    st.integers(0, 40))
USABLE_TRANSFORMS = ["", "", "PCA{0},", "PCAR{0},", "OPQ{1},", "OPQ{1}_{0},", "RR{0},", "L2norm,", "Pad{0},"]
TRANSFORMS = [*USABLE_TRANSFORMS, "PCAW{0},", "ITQ{0},", "L2norm,PCA{0},"]
USABLE_MAINS = [
    "Flat", "SQ8", "SQ4", "SQfp16", "SQbf16", "SQ8_direct", "HNSW{3}", "HNSW{3},Flat", "HNSW{3}_SQ8",
    "HNSW{3},PQ{1}", "IVF{2},Flat", "IVF{2}_HNSW{3},Flat", "IVF{2},SQ8", "IVF{2},PQ{1}", "IVF{2},PQ{1}x{4}",
    "IVF{2},PQ{1}np", "IVF{2},PQ{1}x4fs", "IVF{2},PQ{1}x4fsr",
]
MAINS = [
    *USABLE_MAINS, "SQ{2}", "HNSW{3}_PQ{1}x{4}", "IVF{2}(PQ{1}),Flat", "IVF{2}(RCQ{1}x{4}),Flat", "IVF{2},FlatDedup",
    "IVF{2},RQ{1}x{4}", "IVF{2},LSQ{1}x{4}", "IVF{2},ITQ,SH", "IVF{2},PQ{1}+{4}", "IMI2x{4},Flat",
    "PQ{1}", "PQ{1}x{4}", "PQ{1}np", "PQ{1}x4fs", "RQ{1}x{4}", "LSQ{1}x{4}", "PRQ{1}x{3}x{4}", "PLSQ{1}x{3}x{4}",
    "RQ{1}x{4}fs", "NSG{3}", "NSG{3},Flat", "LSH", "LSHrt", "ZnLattice{1}x{4}_{3}", "MinMax,Flat",
    "MinMaxFP16,SQ8", "BFlat", "BHNSW{3}", "BIVF{2}", "Flat,Flat", "Flat,PQ{1}", "IVF{2}", "nonsense",
]
SUFFIXES = ["", "", "", ",RFlat", ",Refine(Flat)", ",Refine(SQfp16)", ",IDMap", ",IDMap2", ",Flat", "\x00"]
WRAPPERS = ["{}", "{}", "{}", "IDMap,{}", "IDMap2,{}", " {} ", "{}{}"]


def _factory(parts: tuple[str, str, str, str, list[int]]) -> str:
    transform, main, suffix, wrapper, values = parts
    inner = f"{transform}{main}{suffix}".format(*values)
    return wrapper.format(inner, inner)


factories = st.one_of(
    st.tuples(st.sampled_from(USABLE_TRANSFORMS), st.sampled_from(USABLE_MAINS), st.just(""), st.just("{}"),
              st.lists(good_numbers, min_size=5, max_size=5)).map(_factory),
    st.tuples(st.sampled_from(TRANSFORMS), st.sampled_from(MAINS), st.sampled_from(SUFFIXES),
              st.sampled_from(WRAPPERS), st.lists(numbers, min_size=5, max_size=5)).map(_factory),
    st.text(st.characters(codec="utf-8"), max_size=30),
)


@_settings(50)
@given(index_type=factories)
def test_generated_index_types_build_a_searchable_index_or_change_nothing(attacked, index_type) -> None:
    request = pb.RebuildIndexRequest(catalog_paths=["catalog.jsonl"], index_type=index_type)
    code, message, live = _rebuild_outcome(attacked, request)
    if live:
        hits = attacked.client.search(vector=UNITS[1], k=3, modalities=["vector"], exclude=["unit:1"])
        assert len(hits) == 3 and "unit:1" not in [h.key for h in hits], index_type
    else:
        assert code in FAILED_BUILD, (index_type, code, message)


# --- paths in requests and in catalog rows ------------------------------------------------------

components = st.one_of(
    st.sampled_from(["..", ".", "", "catalog.jsonl", "clips", "model", "index", "outside", "secret.wav", "n" * 256,
                     "é" * 128, "\x00", "/proc/self/environ", "link.wav"]),
    st.text(st.characters(codec="utf-8"), min_size=1, max_size=20),
    st.integers(250, 300).map(lambda n: "c" * n),
)
paths = st.lists(components, min_size=1, max_size=4).map("/".join)


@_settings(40)
@given(catalog=paths, model=st.one_of(st.just(""), paths), pairs=st.one_of(st.just(""), paths))
def test_generated_request_paths_are_refused_cleanly(attacked, catalog, model, pairs) -> None:
    request = pb.RebuildIndexRequest(catalog_paths=[catalog], model_dir=model, validation_pairs=pairs,
                                     min_recall=0.1 if pairs else 0.0)
    code, message, live = _rebuild_outcome(attacked, request)
    assert live or code in FAILED_BUILD, (code, message)


@_settings(30)
@given(audio=paths)
def test_generated_catalog_audio_paths_stay_inside_the_data_dir(attacked, audio) -> None:
    catalog = (attacked.root / "catalog.jsonl").read_text()  # a rebuild that goes live keeps the entries
    (attacked.root / "fuzz-audio.jsonl").write_text(catalog + json.dumps({"key": "fuzz:audio", "audio": audio}) + "\n")
    code, message, live = _rebuild_outcome(attacked, pb.RebuildIndexRequest(catalog_paths=["fuzz-audio.jsonl"]))
    if live:
        assert (attacked.root / audio).resolve().is_relative_to(attacked.root), audio
    else:
        assert code in FAILED_BUILD, (audio, code, message)


# --- keys and metadata around their limits ------------------------------------------------------

characters = st.sampled_from(["k", "é", "語", "😀"])
keys = st.tuples(characters, st.integers(200, 1_100)).map(lambda p: p[0] * p[1])
blobs = st.integers((64 << 10) - 200, (64 << 10) + 200).map(lambda n: {"blob": "x" * n})


def _json_bytes(metadata: dict) -> int:
    return len(json.dumps(metadata, separators=(",", ":"), ensure_ascii=False).encode())


@_settings(30)
@given(key=keys, metadata=st.one_of(st.just({}), blobs))
def test_generated_keys_and_metadata_are_stored_within_the_limits_only(attacked, key, metadata) -> None:
    entry = pb.CatalogEntry(key=key, vector=pb.Vector(values=UNITS[DIM - 1]))
    entry.metadata.update(metadata)
    fits = (len(key.encode()) <= DEFAULT_LIMITS.max_key_bytes
            and _json_bytes(metadata) <= DEFAULT_LIMITS.max_metadata_bytes)
    if not fits:
        attacked.refused(lambda: attacked.client.stub.Upsert(pb.UpsertRequest(entries=[entry]), timeout=30),
                         [EXHAUSTED], "entries[0].", "max_")
        return
    assert attacked.client.stub.Upsert(pb.UpsertRequest(entries=[entry]), timeout=30).upserted == 1
    try:
        [hit] = attacked.client.search(vector=UNITS[DIM - 1], k=1, modalities=["vector"], exclude=["unit:15"])
        assert (hit.key, hit.metadata) == (key, metadata)
    finally:
        attacked.client.delete([key])


def test_the_server_still_serves_after_the_generated_attacks(attacked) -> None:
    attacked.client.wait_ready()
    assert attacked.client.search(vector=UNITS[4], k=1)[0].key == "unit:4"
