"""Generated requests against the real server: every one gets an answer with a status a client
can act on, never INTERNAL or UNKNOWN (a bug), and the server stays healthy.

Hypothesis draws queries of every kind with odd values (empty, NaN and infinite floats, wrong
lengths, random bytes as audio, odd Unicode, huge and negative k, unknown modalities and filters,
filter field names with NUL, backslashes, quotes or thousands of characters, ids of 16 KB).
Status messages stay short whatever the input was: a client drops a call whose status message is
over its header limit. Examples are derandomized: the same requests on every run.
"""

from __future__ import annotations

import math
import struct

import grpc
from google.protobuf import struct_pb2
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from jointspace.v1 import jointspace_pb2 as pb

ACCEPTABLE = {
    grpc.StatusCode.OK,
    grpc.StatusCode.INVALID_ARGUMENT,
    grpc.StatusCode.NOT_FOUND,
    grpc.StatusCode.RESOURCE_EXHAUSTED,
}
DIM = 16

floats = st.floats(allow_nan=True, allow_infinity=True, width=32)
texts = st.text(max_size=300)
ids = st.one_of(st.sampled_from(["m:0", "m:1", "u:3", "", "m:" + "9" * 16_000]), st.text(max_size=20))
MAX_DETAILS = 1_000


def _packed(values: list[float]) -> bytes:
    return struct.pack(f"<{len(values)}f", *values)


queries = st.one_of(
    st.just(pb.Query()),
    ids.map(lambda i: pb.Query(id=i)),
    st.lists(ids, max_size=30).map(lambda bag: pb.Query(ids=pb.IdList(ids=bag))),
    texts.map(lambda t: pb.Query(text=t)),
    st.binary(max_size=2000).map(lambda b: pb.Query(audio=pb.Audio(content=b))),
    st.tuples(st.binary(max_size=4000), st.integers(-10, 200_000)).map(
        lambda p: pb.Query(audio=pb.Audio(content=p[0], sample_rate=p[1]))
    ),
    st.lists(floats, max_size=40).map(lambda v: pb.Query(vector=pb.Vector(values=v))),
    st.lists(floats, min_size=DIM, max_size=DIM).map(lambda v: pb.Query(vector=pb.Vector(f32=_packed(v)))),
    st.binary(max_size=100).map(lambda b: pb.Query(vector=pb.Vector(f32=b))),
)

values = st.one_of(
    st.text(max_size=10).map(lambda t: struct_pb2.Value(string_value=t)),
    floats.filter(lambda f: not math.isnan(f)).map(lambda f: struct_pb2.Value(number_value=f)),
    st.booleans().map(lambda b: struct_pb2.Value(bool_value=b)),
    st.just(struct_pb2.Value(null_value=0)),
)
fields = st.one_of(
    st.sampled_from(["digit", "speaker", "kind", "", "no-such", "a\\b", "\\", 'q"', "a\x00b", "\x00", "é", "$.x",
                     "f" * 20_000]),
    st.text(st.characters(codec="utf-8"), max_size=30),
)
filters = st.lists(st.builds(pb.MetadataFilter, field=fields, any_of=st.lists(values, max_size=3)), max_size=2)

search_requests = st.builds(
    pb.SearchRequest,
    query=queries,
    k=st.one_of(st.integers(-5, 20), st.sampled_from([0, 10_000, 2**31 - 1, -(2**31)])),
    modalities=st.lists(st.sampled_from(["audio", "text", "id", "vector", "", "video"]), max_size=3),
    exclude_keys=st.lists(st.text(max_size=12), max_size=3),
    filters=filters,
)


def _status(call) -> grpc.StatusCode:
    try:
        call()
    except grpc.RpcError as error:
        assert error.details(), "an error status must come with a message"
        assert len(error.details()) <= MAX_DETAILS, error.details()[:200]
        return error.code()
    return grpc.StatusCode.OK


@settings(max_examples=150, derandomize=True, database=None, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(request=search_requests)
def test_generated_searches_get_a_proper_status(client, request: pb.SearchRequest) -> None:
    code = _status(lambda: client.stub.Search(request, timeout=30))
    assert code in ACCEPTABLE, (code, request)


@settings(max_examples=60, derandomize=True, database=None, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(inputs=st.lists(queries, max_size=5), k=st.integers(-2, 12))
def test_generated_embeds_and_batches_get_a_proper_status(client, inputs: list[pb.Query], k: int) -> None:
    code = _status(lambda: client.stub.Embed(pb.EmbedRequest(inputs=inputs), timeout=30))
    assert code in ACCEPTABLE, (code, inputs)
    batch = pb.BatchSearchRequest(requests=[pb.SearchRequest(query=q, k=k) for q in inputs])
    code = _status(lambda: client.stub.BatchSearch(batch, timeout=30))
    assert code in ACCEPTABLE, (code, batch)


def test_server_still_answers_after_the_generated_requests(client) -> None:
    client.wait_ready()
    assert client.search(text="seven", k=3)
