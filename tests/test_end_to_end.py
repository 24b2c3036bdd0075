"""Every query kind and every error, through a real gRPC server over loopback."""

from __future__ import annotations

import math

import grpc
import numpy as np
import pytest
import soundfile
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc

from jointspace.client import Client, make_query
from jointspace.v1 import jointspace_pb2 as pb
from jointspace.v1 import jointspace_pb2_grpc as pb_grpc

DIM = 16


def _check_hits(hits, k, modalities=None):
    assert 0 < len(hits) <= k
    scores = [h.score for h in hits]
    assert scores == sorted(scores, reverse=True)
    assert all(-1.0001 <= s <= 1.0001 for s in scores)
    if modalities:
        assert {h.modality for h in hits} <= set(modalities)
    assert len({h.key for h in hits}) == len(hits)


def test_id_query_returns_films_with_metadata(client, built):
    hits = client.search(id="m:5", k=5, modalities=["id"])
    _check_hits(hits, 5, ["id"])
    assert len(hits) == 5
    titles = dict(zip(built.films.film_ids.tolist(), built.films.film_titles))
    assert all(h.metadata["title"] == titles[h.key] for h in hits)
    # Scores are inner products of the model's vectors (ids: length at most 1, not a cosine).
    query, *films = client.embed([make_query(id=key) for key in ["m:5", *(h.key for h in hits)]])
    np.testing.assert_allclose([h.score for h in hits], np.stack(films) @ query, atol=1e-5)


def test_exclude_keys_drops_them_and_still_returns_k(client):
    hits = client.search(id="m:5", k=5, modalities=["id"], exclude=["m:5"])
    assert len(hits) == 5 and "m:5" not in {h.key for h in hits}


def test_ids_history_query(client, built):
    history = [str(built.films.film_ids[f]) for f in built.films.events_of_user(3)]
    hits = client.search(ids=history, k=10, modalities=["id"], exclude=history)
    _check_hits(hits, 10, ["id"])
    assert not set(history) & {h.key for h in hits}


def test_bag_with_some_unknown_ids_uses_the_known_ones(client):
    known = client.search(ids=["m:1", "m:2"], k=3, modalities=["id"])
    mixed = client.search(ids=["m:1", "never-seen", "m:2"], k=3, modalities=["id"])
    assert [h.key for h in known] == [h.key for h in mixed]


def test_text_query_finds_clips_of_that_spoken_word(client, built):
    """Every indexed clip is the unheard speaker's, so the speaker proves nothing: the hits must
    say the word. A guess puts k × (one clip in ten) of the word's clips in a top k; the model,
    weak on a voice it never heard, must do far better over all ten words."""
    from jointspace.data.fsdd import DIGIT_WORDS

    k = 4
    answers = client.batch_search([make_query(text=word) for word in DIGIT_WORDS], k=k, modalities=["audio"])
    for hits in answers:
        _check_hits(hits, k, ["audio"])
        assert all(h.key.startswith(f"clip:{h.metadata['digit']}_") for h in hits)  # the clip's own label
    right = sum(h.metadata["word"] == word for word, hits in zip(DIGIT_WORDS, answers) for h in hits)
    guessed = k  # ten words × k hits × one chance in ten that a guessed clip says the word
    assert right >= 2.5 * guessed, f"{right} of {len(DIGIT_WORDS) * k} hits say the word asked for"


def test_audio_file_bytes_query(client, built):
    clip = built.indexed_clips[0]
    hits = client.search(audio=clip.path.read_bytes(), k=3)
    _check_hits(hits, 3)
    assert hits[0].key == f"clip:{clip.path.stem}"  # the same clip is its own best match
    assert hits[0].score == pytest.approx(1.0, abs=1e-4)


def test_audio_raw_pcm_query_matches_file_query(client, built):
    clip = built.indexed_clips[1]
    samples, rate = soundfile.read(clip.path, dtype="float32")
    from_pcm = client.search(audio=samples.astype("<f4").tobytes(), sample_rate=rate, k=3)
    from_file = client.search(audio_path=clip.path, k=3)
    assert [h.key for h in from_pcm] == [h.key for h in from_file]


def test_vector_query_and_embed_agree(client):
    [vector] = client.embed([make_query(text="seven")])
    assert vector.shape == (DIM,)
    assert np.linalg.norm(vector) == pytest.approx(1.0, abs=1e-5)
    by_vector = client.search(vector=vector * 3.0, k=5)  # normalised server-side
    by_text = client.search(text="seven", k=5)
    assert [h.key for h in by_vector] == [h.key for h in by_text]
    assert by_vector[0].score == pytest.approx(by_text[0].score, abs=1e-5)


@pytest.mark.parametrize("scale", [1e38, 1e-40], ids=["norm-overflows-float32", "norm-underflows-float32"])
def test_vector_query_of_extreme_magnitude_keeps_its_direction(client, scale):
    """Finite float32 values whose norm overflows or underflows are still a direction."""
    [vector] = client.embed([make_query(text="seven")])
    by_extreme = client.search(vector=(vector * np.float32(scale)).astype(np.float32), k=5)
    by_text = client.search(text="seven", k=5)
    assert [h.key for h in by_extreme] == [h.key for h in by_text]
    assert by_extreme[0].score == pytest.approx(by_text[0].score, abs=1e-3)


def test_vector_values_field_is_accepted(client):
    request = pb.SearchRequest(query=pb.Query(vector=pb.Vector(values=[1.0] + [0.0] * (DIM - 1))), k=1,
                               modalities=["vector"])
    [hit] = client.stub.Search(request, timeout=10).hits
    assert hit.key == "vec:unit" and hit.score == pytest.approx(1.0, abs=1e-5)


def test_embed_mixed_batch(client, built):
    queries = [make_query(id="m:1"), make_query(ids=["m:1", "m:2"]), make_query(text="four"),
               make_query(audio_path=built.indexed_clips[0].path), make_query(vector=[0.5] * DIM)]
    vectors = client.embed(queries)
    assert vectors.shape == (5, DIM)
    norms = np.linalg.norm(vectors, axis=1)
    assert np.all((norms[:2] > 0) & (norms[:2] <= 1.0 + 1e-5))  # id vectors: at most 1 long
    assert np.allclose(norms[2:], 1.0, atol=1e-5)


def test_batch_search_equals_single_searches(client):
    queries = [make_query(text="two"), make_query(id="m:7"), make_query(ids=["m:3", "m:4"])]
    batched = client.batch_search(queries, k=4)
    single = [client.search(k=4, text="two"), client.search(k=4, id="m:7"),
              client.search(k=4, ids=["m:3", "m:4"])]
    assert [[h.key for h in r] for r in batched] == [[h.key for h in r] for r in single]


@pytest.mark.parametrize("k, modalities", [(6, []), (6, ["id"]), (100, ["id"])])
def test_a_batch_of_plain_vectors_is_answered_as_each_query_alone(client, k, modalities):
    """Packed vectors with only k (and modalities) set take one matrix search
    (`plain_vector_queries`); one modality's answers come from FAISS's arrays, written without a
    message per hit when they are many (answer_bytes.py). A threshold that changes nothing sends the same
    queries through the general path."""
    rng = np.random.default_rng(4)
    vectors = rng.normal(size=(8, DIM)).astype("<f4")

    def requests(**extra):
        return [pb.SearchRequest(query=pb.Query(vector=pb.Vector(f32=v.tobytes())), k=k, modalities=modalities,
                                 **extra) for v in vectors]

    fast = client.stub.BatchSearch(pb.BatchSearchRequest(requests=requests()), timeout=10)
    parsed = client.stub.BatchSearch(pb.BatchSearchRequest(requests=requests(min_score=-2.0)), timeout=10)
    alone = [client.stub.Search(request, timeout=10) for request in requests()]
    assert list(fast.results) == list(parsed.results) == alone
    assert all(len(result.hits) == min(k, client.info().size_by_modality.get("id", 0) if modalities else k)
               for result in fast.results)


@pytest.mark.parametrize("bad, words", [
    (np.ones(DIM + 1, "<f4").tobytes(), f"expected {DIM} values, got {DIM + 1}"),
    (np.full(DIM, np.nan, "<f4").tobytes(), "finite"),
    (np.zeros(DIM, "<f4").tobytes(), "zero vector"),
], ids=["long", "nan", "zero"])
def test_a_bad_vector_in_a_plain_batch_is_refused_saying_why(client, bad, words):
    good = np.ones(DIM, "<f4").tobytes()
    request = pb.BatchSearchRequest(requests=[
        pb.SearchRequest(query=pb.Query(vector=pb.Vector(f32=vector)), k=3) for vector in (good, good, bad, good)])
    with pytest.raises(grpc.RpcError) as raised:
        client.stub.BatchSearch(request, timeout=10)
    assert raised.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert words in raised.value.details()


def test_modality_filter_spans_several_indexes(client):
    hits = client.search(text="three", k=20, modalities=["audio", "text"])
    assert {h.modality for h in hits} == {"audio", "text"}


def test_index_info(client, built):
    info = client.info()
    assert info.dim == DIM
    assert info.generation == "gen-000001"
    assert info.size == len(built.catalog.read_text().splitlines())
    assert set(info.size_by_modality) == {"audio", "text", "id", "vector"}
    assert {"id", "ids", "text", "audio", "vector"} <= set(info.query_modalities)
    assert info.model_version and info.bytes_per_vector > 0


def test_health_and_reflection(server):
    with grpc.insecure_channel(server) as channel:
        health = health_pb2_grpc.HealthStub(channel)
        status = health.Check(health_pb2.HealthCheckRequest(service="jointspace.v1.JointSpace"), timeout=5)
        assert status.status == health_pb2.HealthCheckResponse.SERVING
        stub = reflection_pb2_grpc.ServerReflectionStub(channel)
        [reply] = list(stub.ServerReflectionInfo(iter([reflection_pb2.ServerReflectionRequest(list_services="")]),
                                                 timeout=5))
        names = {s.name for s in reply.list_services_response.service}
        assert "jointspace.v1.JointSpace" in names and "grpc.health.v1.Health" in names


BAD_SEARCHES = [
    ("empty query", pb.SearchRequest(k=3), grpc.StatusCode.INVALID_ARGUMENT, "query"),
    ("empty id", pb.SearchRequest(query=pb.Query(id=""), k=3), grpc.StatusCode.INVALID_ARGUMENT, "query"),
    ("empty bag", pb.SearchRequest(query=pb.Query(ids=pb.IdList()), k=3), grpc.StatusCode.INVALID_ARGUMENT, "ids"),
    ("blank text", pb.SearchRequest(query=pb.Query(text="   "), k=3), grpc.StatusCode.INVALID_ARGUMENT, "text"),
    ("text without words", pb.SearchRequest(query=pb.Query(text="?!."), k=3),
     grpc.StatusCode.INVALID_ARGUMENT, "no words"),
    ("short vector", pb.SearchRequest(query=pb.Query(vector=pb.Vector(values=[1.0, 2.0])), k=3),
     grpc.StatusCode.INVALID_ARGUMENT, "expected 16 values, got 2"),
    ("ragged f32", pb.SearchRequest(query=pb.Query(vector=pb.Vector(f32=b"\x00" * 7)), k=3),
     grpc.StatusCode.INVALID_ARGUMENT, "float32"),
    ("nan vector", pb.SearchRequest(query=pb.Query(vector=pb.Vector(values=[math.nan] * DIM)), k=3),
     grpc.StatusCode.INVALID_ARGUMENT, "finite"),
    ("zero vector", pb.SearchRequest(query=pb.Query(vector=pb.Vector(values=[0.0] * DIM)), k=3),
     grpc.StatusCode.INVALID_ARGUMENT, "zero"),
    ("undecodable audio", pb.SearchRequest(query=pb.Query(audio=pb.Audio(content=b"not audio at all")), k=3),
     grpc.StatusCode.INVALID_ARGUMENT, "audio"),
    ("empty audio", pb.SearchRequest(query=pb.Query(audio=pb.Audio(content=b"")), k=3),
     grpc.StatusCode.INVALID_ARGUMENT, "audio"),
    ("ragged pcm", pb.SearchRequest(query=pb.Query(audio=pb.Audio(content=b"\x00" * 6, sample_rate=8000)), k=3),
     grpc.StatusCode.INVALID_ARGUMENT, "float32"),
    ("unknown id", pb.SearchRequest(query=pb.Query(id="m:999999"), k=3), grpc.StatusCode.NOT_FOUND, "m:999999"),
    ("all ids unknown", pb.SearchRequest(query=pb.Query(ids=pb.IdList(ids=["x", "y"])), k=3),
     grpc.StatusCode.NOT_FOUND, "none of the 2 ids"),
    ("k zero", pb.SearchRequest(query=pb.Query(text="one"), k=0), grpc.StatusCode.INVALID_ARGUMENT, "k"),
    ("k negative", pb.SearchRequest(query=pb.Query(text="one"), k=-4), grpc.StatusCode.INVALID_ARGUMENT, "k"),
    ("k huge", pb.SearchRequest(query=pb.Query(text="one"), k=10**9), grpc.StatusCode.RESOURCE_EXHAUSTED, "k"),
    ("unknown modality", pb.SearchRequest(query=pb.Query(text="one"), k=3, modalities=["smell"]),
     grpc.StatusCode.INVALID_ARGUMENT, "smell"),
]


@pytest.mark.parametrize("request_, code, words", [b[1:] for b in BAD_SEARCHES], ids=[b[0] for b in BAD_SEARCHES])
def test_bad_search_gets_a_clear_status_and_the_server_keeps_serving(client, request_, code, words):
    before = client.search(id="m:5", k=3)
    with pytest.raises(grpc.RpcError) as raised:
        client.stub.Search(request_, timeout=10)
    assert raised.value.code() == code
    assert words in raised.value.details()
    assert [h.key for h in client.search(id="m:5", k=3)] == [h.key for h in before]


def test_bad_batch_entries_name_their_position(client):
    request = pb.BatchSearchRequest(requests=[pb.SearchRequest(query=pb.Query(text="one"), k=2),
                                              pb.SearchRequest(k=2)])
    with pytest.raises(grpc.RpcError) as raised:
        client.stub.BatchSearch(request, timeout=10)
    assert raised.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "requests[1]" in raised.value.details()


def test_empty_embed_and_batch_are_rejected(client):
    for call, request in ((client.stub.Embed, pb.EmbedRequest()), (client.stub.BatchSearch, pb.BatchSearchRequest())):
        with pytest.raises(grpc.RpcError) as raised:
            call(request, timeout=10)
        assert raised.value.code() == grpc.StatusCode.INVALID_ARGUMENT


def test_lifecycle_methods_refuse_empty_requests_naming_the_field(client):
    # Requests that change nothing: the shared server's index must stay as it is
    # (the lifecycle itself is tested on private copies in test_lifecycle.py).
    for call, request, field in ((client.stub.Upsert, pb.UpsertRequest(), "entries"),
                                 (client.stub.Delete, pb.DeleteRequest(), "keys"),
                                 (client.stub.RebuildIndex, pb.RebuildIndexRequest(), "catalog_paths")):
        with pytest.raises(grpc.RpcError) as raised:
            call(request, timeout=10)
        assert raised.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert raised.value.details().startswith(field)


def test_unreachable_server_fails_fast_with_a_deadline():
    with Client("127.0.0.1:1", timeout=1.0) as dead:
        with pytest.raises(grpc.RpcError) as raised:
            dead.search(text="one")
    assert raised.value.code() in (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED)


def _keys(stub, k: int = 10, **fields) -> list[str]:
    return [h.key for h in stub.Search(pb.SearchRequest(k=k, modalities=["id"], **fields), timeout=30).hits]


def test_a_history_never_gets_its_own_ids_back_unless_asked(server, built):
    """exclude_query_ids: on by default for a history, off for one id; seen_ids always apply."""
    history = [str(built.films.film_ids[f]) for f in built.films.events_of_user(3)]
    with grpc.insecure_channel(server) as channel:
        stub = pb_grpc.JointSpaceStub(channel)
        bag = make_query(ids=history)
        default = _keys(stub, query=bag)
        assert len(default) == 10 and not set(history) & set(default)
        kept = _keys(stub, query=bag, exclude_query_ids=False)
        assert set(history) & set(kept)  # a bag's nearest films are mostly its own
        assert _keys(stub, query=bag, exclude_query_ids=True) == default
        one = make_query(id="m:5")
        assert _keys(stub, query=one) == _keys(stub, query=one, exclude_query_ids=False)
        assert "m:5" in _keys(stub, query=one, k=100)  # an id finds itself (ids are clipped, not unit)
        assert "m:5" not in _keys(stub, query=one, k=100, exclude_query_ids=True)
        # A user's query with their seen films: none of those come back, k still do.
        first = _keys(stub, query=make_query(id="m:5"))
        unseen = _keys(stub, query=make_query(id="m:5"), seen_ids=first[:4])
        assert len(unseen) == 10 and not set(first[:4]) & set(unseen)
        batch = stub.BatchSearch(pb.BatchSearchRequest(requests=[
            pb.SearchRequest(query=bag, k=10, modalities=["id"]),
            pb.SearchRequest(query=bag, k=10, modalities=["id"], exclude_query_ids=False)]), timeout=30)
        assert [[h.key for h in r.hits] for r in batch.results] == [default, kept]
