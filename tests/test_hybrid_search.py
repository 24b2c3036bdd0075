"""Hybrid text search: the lexical index beside every generation, fused with the vector index,
over a real server on loopback; kept current by Upsert and Delete and swapped by a rebuild. Every
test that changes the index serves its own copy of the session index."""

from __future__ import annotations

import json
import math
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import grpc
import pytest

from jointspace.client import Client, OperationState
from jointspace.core.lexical_weight import DEFAULT_LEXICAL_WEIGHT
from jointspace.server.index.fusion import fuse
from jointspace.server.index.index_directory import MANIFEST
from jointspace.server.index.lexical_terms import deletions, document, fields, terms
from jointspace.v1 import jointspace_pb2 as pb
from serving import own_server, served_copy


def _engine(model: Path, index: Path) -> Any:
    from jointspace.server.serving.engine import Engine

    return Engine(model, index)


@pytest.fixture()
def own(built: Any, tmp_path: Path) -> Iterator[tuple[Client, Path]]:
    with served_copy(built, tmp_path) as pair:
        yield pair


def _search(client: Client, text: str, weight: float | None, k: int = 5, **fields: Any) -> pb.SearchResponse:
    request = pb.SearchRequest(query=pb.Query(text=text), k=k, **fields)
    if weight is not None:
        request.lexical_weight = weight
    return client.stub.Search(request, timeout=60)


def _keys(response: pb.SearchResponse) -> list[str]:
    return [hit.key for hit in response.hits]


def _unique_title(built: Any) -> tuple[str, str]:
    """(key, bare title) of a film no other film shares its title words with."""
    bare = [title.split(" | ")[0].rsplit(" (", 1)[0] for title in built.films.film_titles]
    words = [frozenset(terms(b)) for b in bare]
    index = next(i for i, w in enumerate(words) if words.count(w) == 1)
    return str(built.films.film_ids[index]), bare[index]


def test_terms_fold_case_accents_and_punctuation():
    assert terms("Amélie's CAFÉ-au-lait, 1977!") == ["amelie", "s", "cafe", "au", "lait", "1977"]
    indexed = document("text", "Seven Seas", {"title": "Star Wars", "genres": ["sci-fi"], "year": 1977})
    assert fields(indexed) == ["seven seas", "star wars", "sci fi"]  # one field a line, whole
    assert indexed.split() == ["seven", "seas", "star", "wars", "sci", "fi"]
    assert document("id", "m:1", {"nested": {"title": "x"}}) == ""  # ids and nested values are not words


@pytest.mark.parametrize("typo", ["harbr", "harbour", "habror", "harbxr"])
def test_one_edit_apart_terms_share_a_deletion(typo):
    assert deletions("harbor") & deletions(typo)
    assert not deletions("harbor") & deletions("hxrbxr")


def test_fusion_keeps_one_side_at_the_ends_and_ranks_agreement_first():
    vector = [(0.9, "a"), (0.85, "c"), (0.2, "b")]
    lexical = [(12.0, "c"), (3.0, "d")]
    for method in ("rrf", "weighted"):
        assert [item for _, item, _ in fuse(vector, lexical, 0.0, 5, method)] == ["a", "c", "b"]
        assert [item for _, item, _ in fuse(vector, lexical, 1.0, 5, method)] == ["c", "d"]
        both = fuse(vector, lexical, 0.5, 2, method)
        assert both[0][1:] == ("c", ("vector", "lexical"))
        assert len(both) == 2


def test_every_generation_has_a_lexical_index(built):
    from jointspace.server.index.generation import Generation

    generation = Generation(built.index / (built.index / "CURRENT").read_text().strip())
    assert "lexical.sqlite" in generation.manifest.files
    assert generation.lexical is not None
    # film titles, the metadata of clips and words, the digit words, the raw vector's "kind"
    assert generation.lexical.modalities == {"id", "audio", "text", "vector"}


def test_a_bare_title_is_found_by_its_words_and_hits_say_which_side(built, client):
    key, title = _unique_title(built)
    lexical = _search(client, title, 1.0, modalities=["id"])
    assert _keys(lexical)[0] == key
    assert all(list(hit.found_by) == ["lexical"] for hit in lexical.hits)
    # k = every film: the vector side returns them all, so the title's film is found by both
    # sides whatever the small test model's vector for this title is worth.
    films = len(built.films.film_ids)
    hybrid = _search(client, title.lower(), DEFAULT_LEXICAL_WEIGHT, k=films, modalities=["id"])
    found_by = {hit.key: tuple(hit.found_by) for hit in hybrid.hits}
    assert found_by[key] == ("vector", "lexical") and _keys(hybrid)[0] == key
    assert {"vector"} in [set(sides) for sides in found_by.values()]  # films no title word matches
    plain = _search(client, title, None, modalities=["id"])
    assert all(not hit.found_by for hit in plain.hits)
    assert _keys(_search(client, title, 0.0, modalities=["id"])) == _keys(plain)


def test_an_entry_whose_field_is_the_whole_query_comes_first(own):
    client, _ = own
    client.upsert([{"key": "note:long", "text": "Alchemist notes on the alchemist", "metadata": {"by": "x"}},
                   {"key": "note:exact", "text": "unrelated words here", "metadata": {"title": "The Alchemist"}}])
    assert _keys(_search(client, "the alchemist", 1.0, k=2))[0] == "note:exact"


def test_a_typo_is_forgiven(built, client):
    key, title = _unique_title(built)
    words = title.split()
    longest = max(range(len(words)), key=lambda i: len(words[i]))
    word = words[longest]
    words[longest] = word[0] + word[2] + word[1] + word[3:]  # two letters swapped
    assert _keys(_search(client, " ".join(words), 1.0, modalities=["id"]))[0] == key


def test_excludes_filters_modalities_and_k_apply_to_the_lexical_side(built, client):
    key, title = _unique_title(built)
    assert key not in _keys(_search(client, title, 1.0, exclude_keys=[key]))
    taste = int(built.films.film_taste[list(built.films.film_ids).index(key)])
    other = pb.MetadataFilter(field="taste")
    other.any_of.add().number_value = (taste + 1) % 6
    filtered = _search(client, title, 1.0, k=10, filters=[other])
    assert key not in _keys(filtered) and filtered.hits
    assert all(hit.metadata["taste"] == (taste + 1) % 6 for hit in filtered.hits)
    assert not _search(client, title, 1.0, modalities=["vector"]).hits
    assert len(_search(client, title, 0.5, k=3).hits) == 3


@pytest.mark.parametrize("weight", [math.nan, -0.1, 1.5, math.inf])
def test_a_bad_lexical_weight_is_invalid_argument(client, weight):
    with pytest.raises(grpc.RpcError) as raised:
        _search(client, "seven", weight)
    assert raised.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "lexical_weight" in raised.value.details()


def test_only_text_queries_have_a_lexical_side(client):
    for query in (pb.Query(id="m:1"), pb.Query(vector=pb.Vector(values=[1.0] + [0.0] * 15))):
        batch = pb.BatchSearchRequest(requests=[pb.SearchRequest(query=query, k=3, lexical_weight=0.5)])
        with pytest.raises(grpc.RpcError) as raised:
            client.stub.BatchSearch(batch, timeout=60)
        assert raised.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert "lexical_weight" in raised.value.details()


def test_batch_search_answers_hybrid_and_plain_queries_each_their_way(built, client):
    key, title = _unique_title(built)
    batch = pb.BatchSearchRequest(requests=[
        pb.SearchRequest(query=pb.Query(text=title), k=3, modalities=["id"], lexical_weight=1.0),
        pb.SearchRequest(query=pb.Query(text=title), k=3, modalities=["id"]),
    ])
    hybrid, plain = client.stub.BatchSearch(batch, timeout=60).results
    assert hybrid.hits[0].key == key and list(hybrid.hits[0].found_by) == ["lexical"]
    assert not any(hit.found_by for hit in plain.hits)


def test_upsert_and_delete_keep_the_lexical_side_current_across_a_restart(built, own):
    client, index = own
    key, title = _unique_title(built)
    client.upsert([{"key": "note:quokka", "text": "Zanzibar quokka diaries", "metadata": {"shelf": "travel"}},
                   {"key": key, "id": key, "metadata": {"title": "Renamed Picture (2001)"}}])

    def check(c: Client) -> None:
        found = _search(c, "quokka", 1.0)
        assert _keys(found) == ["note:quokka"] and list(found.hits[0].found_by) == ["lexical"]
        assert found.hits[0].metadata["shelf"] == "travel"
        assert _keys(_search(c, "renamed picture", 1.0, modalities=["id"]))[0] == key
        assert key not in _keys(_search(c, title, 1.0, k=3, modalities=["id"]))  # its old title is gone

    check(client)
    restarted = _engine(built.model, index)
    with own_server(restarted) as running, Client(f"127.0.0.1:{running.port}", timeout=60) as again:
        check(again)
        again.delete(["note:quokka", key])
        assert not _search(again, "quokka", 1.0).hits
        assert key not in _keys(_search(again, "renamed picture", 1.0, k=10))


def test_a_rebuild_swaps_the_lexical_index_with_its_generation(built, own, tmp_path):
    client, _ = own
    catalog = tmp_path / "catalog.jsonl"
    shutil.copy(built.catalog, catalog)
    with catalog.open("a") as out:
        out.write(json.dumps({"key": "note:okapi", "text": "An okapi in the rain forest"}) + "\n")
    assert not _search(client, "okapi", 1.0).hits
    before = client.info().generation
    operation = client.wait(client.rebuild([catalog]).name, poll=0.02)
    assert operation.state == OperationState.SUCCEEDED and operation.generation != before
    found = _search(client, "okapi rain", 1.0)
    assert found.generation == operation.generation and _keys(found)[0] == "note:okapi"


def test_a_generation_without_a_lexical_index_refuses_hybrid_search_only(built, tmp_path):
    index = tmp_path / "index"
    shutil.copytree(built.index, index)
    generation = index / (index / "CURRENT").read_text().strip()
    manifest = json.loads((generation / MANIFEST).read_text())
    del manifest["files"]["lexical.sqlite"]  # as written before hybrid search
    (generation / MANIFEST).write_text(json.dumps(manifest))
    (generation / "lexical.sqlite").unlink()
    with own_server(_engine(built.model, index)) as running, \
            Client(f"127.0.0.1:{running.port}", timeout=60) as client:
        client.wait_ready()
        assert _search(client, "seven", None).hits
        with pytest.raises(grpc.RpcError) as raised:
            _search(client, "seven", 0.5)
        assert raised.value.code() == grpc.StatusCode.FAILED_PRECONDITION
        assert "lexical" in raised.value.details()


def test_both_clients_and_the_command_line_ask_for_hybrid_search(built, server, client):
    import asyncio
    import subprocess

    from jointspace.client import AsyncClient
    from serving import jointspace_exe

    key, title = _unique_title(built)
    [hit] = client.search(text=title, k=1, modalities=["id"], lexical_weight=1.0)
    assert (hit.key, hit.found_by) == (key, ("lexical",))
    [[batched]] = client.batch_search([{"text": title}], k=1, modalities=["id"], lexical_weight=1.0)
    assert batched.key == key

    async def asynchronously() -> list[Any]:
        async with AsyncClient(server, timeout=60) as aio:
            return await aio.search(text=title, k=1, modalities=["id"], lexical_weight=1.0)

    [answered] = asyncio.run(asynchronously())
    assert (answered.key, answered.found_by) == (key, ("lexical",))

    def query(*args: str) -> subprocess.CompletedProcess:
        return subprocess.run([jointspace_exe(), "query", "--target", server, *args],
                              capture_output=True, text=True, timeout=120)

    shown = query("--text", title, "--lexical-weight", "1", "-k", "1", "--modality", "id", "--json")
    assert shown.returncode == 0, shown.stderr
    assert json.loads(shown.stdout)["hits"][0]["found_by"] == ["lexical"]
    assert "[" in query("--text", title, "--hybrid", "-k", "2").stdout  # the sides, in the table
    refused = query("--id", key, "--hybrid")
    assert refused.returncode != 0 and refused.stderr.strip().count("\n") == 0 and "--hybrid" in refused.stderr
    out_of_range = query("--text", title, "--lexical-weight", "2")
    assert out_of_range.returncode != 0 and "weight" in out_of_range.stderr


def test_words_the_text_tower_never_saw_are_answered_from_the_lexical_side(built, own):
    client, _ = own
    client.upsert([{"key": "m:arabic", "id": "m:1", "metadata": {"title": "الفيل الأزرق"}}])
    with pytest.raises(grpc.RpcError) as raised:  # the vector side alone has nothing to go on
        _search(client, "الفيل", None)
    assert raised.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    found = _search(client, "الفيل", DEFAULT_LEXICAL_WEIGHT)
    assert _keys(found) == ["m:arabic"] and list(found.hits[0].found_by) == ["lexical"]
    batch = pb.BatchSearchRequest(requests=[
        pb.SearchRequest(query=pb.Query(text=text), k=1, lexical_weight=1.0) for text in ("الأزرق", "seven")])
    arabic, seven = client.stub.BatchSearch(batch, timeout=60).results
    assert _keys(arabic) == ["m:arabic"] and seven.hits and seven.hits[0].key != "m:arabic"


def test_bench_typed_search_scores_every_method_on_every_kind_of_query(built, capsys):
    from jointspace.cli import main

    assert main(["bench", "typed-search", "--model", str(built.model), str(built.catalog),
                 "--weights", "0.5,0.9", "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["field"] == "title" and report["entries"] == 171
    assert set(report["queries"]) == {"title", "words", "typo"} and all(report["queries"].values())
    assert set(report["scores"]) == {"vector", "lexical", "rrf w=0.5", "rrf w=0.9", "weighted w=0.5",
                                     "weighted w=0.9"}
    for by_kind in report["scores"].values():
        for scores in by_kind.values():
            assert 0 <= scores["recall@1"] <= scores["recall@10"] <= 1 and 0 <= scores["mrr"] <= 1
    # Unique title words: the lexical side finds every bare title among its first ten.
    assert report["scores"]["lexical"]["title"]["recall@10"] == 1.0
    assert all(ms > 0 for ms in report["search_ms_p50"].values())
    assert main(["bench", "typed-search", "--model", str(built.model), str(built.catalog), "--field", "none"]) != 0
