from google.longrunning import operations_pb2 as _operations_pb2
from google.protobuf import struct_pb2 as _struct_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class Vector(_message.Message):
    __slots__ = ("values", "f32")
    VALUES_FIELD_NUMBER: _ClassVar[int]
    F32_FIELD_NUMBER: _ClassVar[int]
    values: _containers.RepeatedScalarFieldContainer[float]
    f32: bytes
    def __init__(self, values: _Optional[_Iterable[float]] = ..., f32: _Optional[bytes] = ...) -> None: ...

class Audio(_message.Message):
    __slots__ = ("content", "sample_rate")
    CONTENT_FIELD_NUMBER: _ClassVar[int]
    SAMPLE_RATE_FIELD_NUMBER: _ClassVar[int]
    content: bytes
    sample_rate: int
    def __init__(self, content: _Optional[bytes] = ..., sample_rate: _Optional[int] = ...) -> None: ...

class IdList(_message.Message):
    __slots__ = ("ids",)
    IDS_FIELD_NUMBER: _ClassVar[int]
    ids: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, ids: _Optional[_Iterable[str]] = ...) -> None: ...

class Query(_message.Message):
    __slots__ = ("id", "ids", "text", "audio", "vector")
    ID_FIELD_NUMBER: _ClassVar[int]
    IDS_FIELD_NUMBER: _ClassVar[int]
    TEXT_FIELD_NUMBER: _ClassVar[int]
    AUDIO_FIELD_NUMBER: _ClassVar[int]
    VECTOR_FIELD_NUMBER: _ClassVar[int]
    id: str
    ids: IdList
    text: str
    audio: Audio
    vector: Vector
    def __init__(self, id: _Optional[str] = ..., ids: _Optional[_Union[IdList, _Mapping]] = ..., text: _Optional[str] = ..., audio: _Optional[_Union[Audio, _Mapping]] = ..., vector: _Optional[_Union[Vector, _Mapping]] = ...) -> None: ...

class EmbedRequest(_message.Message):
    __slots__ = ("inputs",)
    INPUTS_FIELD_NUMBER: _ClassVar[int]
    inputs: _containers.RepeatedCompositeFieldContainer[Query]
    def __init__(self, inputs: _Optional[_Iterable[_Union[Query, _Mapping]]] = ...) -> None: ...

class EmbedResponse(_message.Message):
    __slots__ = ("dim", "count", "vectors", "model_version")
    DIM_FIELD_NUMBER: _ClassVar[int]
    COUNT_FIELD_NUMBER: _ClassVar[int]
    VECTORS_FIELD_NUMBER: _ClassVar[int]
    MODEL_VERSION_FIELD_NUMBER: _ClassVar[int]
    dim: int
    count: int
    vectors: bytes
    model_version: str
    def __init__(self, dim: _Optional[int] = ..., count: _Optional[int] = ..., vectors: _Optional[bytes] = ..., model_version: _Optional[str] = ...) -> None: ...

class SearchRequest(_message.Message):
    __slots__ = ("query", "k", "modalities", "exclude_keys", "filters", "exclude_query_ids", "seen_ids", "lexical_weight", "min_score")
    QUERY_FIELD_NUMBER: _ClassVar[int]
    K_FIELD_NUMBER: _ClassVar[int]
    MODALITIES_FIELD_NUMBER: _ClassVar[int]
    EXCLUDE_KEYS_FIELD_NUMBER: _ClassVar[int]
    FILTERS_FIELD_NUMBER: _ClassVar[int]
    EXCLUDE_QUERY_IDS_FIELD_NUMBER: _ClassVar[int]
    SEEN_IDS_FIELD_NUMBER: _ClassVar[int]
    LEXICAL_WEIGHT_FIELD_NUMBER: _ClassVar[int]
    MIN_SCORE_FIELD_NUMBER: _ClassVar[int]
    query: Query
    k: int
    modalities: _containers.RepeatedScalarFieldContainer[str]
    exclude_keys: _containers.RepeatedScalarFieldContainer[str]
    filters: _containers.RepeatedCompositeFieldContainer[MetadataFilter]
    exclude_query_ids: bool
    seen_ids: _containers.RepeatedScalarFieldContainer[str]
    lexical_weight: float
    min_score: float
    def __init__(self, query: _Optional[_Union[Query, _Mapping]] = ..., k: _Optional[int] = ..., modalities: _Optional[_Iterable[str]] = ..., exclude_keys: _Optional[_Iterable[str]] = ..., filters: _Optional[_Iterable[_Union[MetadataFilter, _Mapping]]] = ..., exclude_query_ids: _Optional[bool] = ..., seen_ids: _Optional[_Iterable[str]] = ..., lexical_weight: _Optional[float] = ..., min_score: _Optional[float] = ...) -> None: ...

class MetadataFilter(_message.Message):
    __slots__ = ("field", "any_of")
    FIELD_FIELD_NUMBER: _ClassVar[int]
    ANY_OF_FIELD_NUMBER: _ClassVar[int]
    field: str
    any_of: _containers.RepeatedCompositeFieldContainer[_struct_pb2.Value]
    def __init__(self, field: _Optional[str] = ..., any_of: _Optional[_Iterable[_Union[_struct_pb2.Value, _Mapping]]] = ...) -> None: ...

class Hit(_message.Message):
    __slots__ = ("key", "score", "modality", "metadata", "found_by")
    KEY_FIELD_NUMBER: _ClassVar[int]
    SCORE_FIELD_NUMBER: _ClassVar[int]
    MODALITY_FIELD_NUMBER: _ClassVar[int]
    METADATA_FIELD_NUMBER: _ClassVar[int]
    FOUND_BY_FIELD_NUMBER: _ClassVar[int]
    key: str
    score: float
    modality: str
    metadata: _struct_pb2.Struct
    found_by: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, key: _Optional[str] = ..., score: _Optional[float] = ..., modality: _Optional[str] = ..., metadata: _Optional[_Union[_struct_pb2.Struct, _Mapping]] = ..., found_by: _Optional[_Iterable[str]] = ...) -> None: ...

class SearchResponse(_message.Message):
    __slots__ = ("hits", "generation")
    HITS_FIELD_NUMBER: _ClassVar[int]
    GENERATION_FIELD_NUMBER: _ClassVar[int]
    hits: _containers.RepeatedCompositeFieldContainer[Hit]
    generation: str
    def __init__(self, hits: _Optional[_Iterable[_Union[Hit, _Mapping]]] = ..., generation: _Optional[str] = ...) -> None: ...

class BatchSearchRequest(_message.Message):
    __slots__ = ("requests",)
    REQUESTS_FIELD_NUMBER: _ClassVar[int]
    requests: _containers.RepeatedCompositeFieldContainer[SearchRequest]
    def __init__(self, requests: _Optional[_Iterable[_Union[SearchRequest, _Mapping]]] = ...) -> None: ...

class BatchSearchResponse(_message.Message):
    __slots__ = ("results",)
    RESULTS_FIELD_NUMBER: _ClassVar[int]
    results: _containers.RepeatedCompositeFieldContainer[SearchResponse]
    def __init__(self, results: _Optional[_Iterable[_Union[SearchResponse, _Mapping]]] = ...) -> None: ...

class GetIndexInfoRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class GetEntriesRequest(_message.Message):
    __slots__ = ("keys",)
    KEYS_FIELD_NUMBER: _ClassVar[int]
    keys: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, keys: _Optional[_Iterable[str]] = ...) -> None: ...

class StoredEntry(_message.Message):
    __slots__ = ("key", "modality", "metadata")
    KEY_FIELD_NUMBER: _ClassVar[int]
    MODALITY_FIELD_NUMBER: _ClassVar[int]
    METADATA_FIELD_NUMBER: _ClassVar[int]
    key: str
    modality: str
    metadata: _struct_pb2.Struct
    def __init__(self, key: _Optional[str] = ..., modality: _Optional[str] = ..., metadata: _Optional[_Union[_struct_pb2.Struct, _Mapping]] = ...) -> None: ...

class GetEntriesResponse(_message.Message):
    __slots__ = ("entries", "missing_keys")
    ENTRIES_FIELD_NUMBER: _ClassVar[int]
    MISSING_KEYS_FIELD_NUMBER: _ClassVar[int]
    entries: _containers.RepeatedCompositeFieldContainer[StoredEntry]
    missing_keys: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, entries: _Optional[_Iterable[_Union[StoredEntry, _Mapping]]] = ..., missing_keys: _Optional[_Iterable[str]] = ...) -> None: ...

class IndexInfo(_message.Message):
    __slots__ = ("generation", "size", "dim", "index_type", "model_version", "size_by_modality", "query_modalities", "bytes_per_vector", "last_change")
    class SizeByModalityEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: int
        def __init__(self, key: _Optional[str] = ..., value: _Optional[int] = ...) -> None: ...
    GENERATION_FIELD_NUMBER: _ClassVar[int]
    SIZE_FIELD_NUMBER: _ClassVar[int]
    DIM_FIELD_NUMBER: _ClassVar[int]
    INDEX_TYPE_FIELD_NUMBER: _ClassVar[int]
    MODEL_VERSION_FIELD_NUMBER: _ClassVar[int]
    SIZE_BY_MODALITY_FIELD_NUMBER: _ClassVar[int]
    QUERY_MODALITIES_FIELD_NUMBER: _ClassVar[int]
    BYTES_PER_VECTOR_FIELD_NUMBER: _ClassVar[int]
    LAST_CHANGE_FIELD_NUMBER: _ClassVar[int]
    generation: str
    size: int
    dim: int
    index_type: str
    model_version: str
    size_by_modality: _containers.ScalarMap[str, int]
    query_modalities: _containers.RepeatedScalarFieldContainer[str]
    bytes_per_vector: float
    last_change: int
    def __init__(self, generation: _Optional[str] = ..., size: _Optional[int] = ..., dim: _Optional[int] = ..., index_type: _Optional[str] = ..., model_version: _Optional[str] = ..., size_by_modality: _Optional[_Mapping[str, int]] = ..., query_modalities: _Optional[_Iterable[str]] = ..., bytes_per_vector: _Optional[float] = ..., last_change: _Optional[int] = ...) -> None: ...

class CatalogEntry(_message.Message):
    __slots__ = ("key", "id", "text", "audio", "vector", "metadata")
    KEY_FIELD_NUMBER: _ClassVar[int]
    ID_FIELD_NUMBER: _ClassVar[int]
    TEXT_FIELD_NUMBER: _ClassVar[int]
    AUDIO_FIELD_NUMBER: _ClassVar[int]
    VECTOR_FIELD_NUMBER: _ClassVar[int]
    METADATA_FIELD_NUMBER: _ClassVar[int]
    key: str
    id: str
    text: str
    audio: Audio
    vector: Vector
    metadata: _struct_pb2.Struct
    def __init__(self, key: _Optional[str] = ..., id: _Optional[str] = ..., text: _Optional[str] = ..., audio: _Optional[_Union[Audio, _Mapping]] = ..., vector: _Optional[_Union[Vector, _Mapping]] = ..., metadata: _Optional[_Union[_struct_pb2.Struct, _Mapping]] = ...) -> None: ...

class RebuildIndexRequest(_message.Message):
    __slots__ = ("catalog_paths", "index_type", "request_id", "model_dir", "validation_pairs", "min_recall", "validation_k", "catalog_includes_changes_through")
    CATALOG_PATHS_FIELD_NUMBER: _ClassVar[int]
    INDEX_TYPE_FIELD_NUMBER: _ClassVar[int]
    REQUEST_ID_FIELD_NUMBER: _ClassVar[int]
    MODEL_DIR_FIELD_NUMBER: _ClassVar[int]
    VALIDATION_PAIRS_FIELD_NUMBER: _ClassVar[int]
    MIN_RECALL_FIELD_NUMBER: _ClassVar[int]
    VALIDATION_K_FIELD_NUMBER: _ClassVar[int]
    CATALOG_INCLUDES_CHANGES_THROUGH_FIELD_NUMBER: _ClassVar[int]
    catalog_paths: _containers.RepeatedScalarFieldContainer[str]
    index_type: str
    request_id: str
    model_dir: str
    validation_pairs: str
    min_recall: float
    validation_k: int
    catalog_includes_changes_through: int
    def __init__(self, catalog_paths: _Optional[_Iterable[str]] = ..., index_type: _Optional[str] = ..., request_id: _Optional[str] = ..., model_dir: _Optional[str] = ..., validation_pairs: _Optional[str] = ..., min_recall: _Optional[float] = ..., validation_k: _Optional[int] = ..., catalog_includes_changes_through: _Optional[int] = ...) -> None: ...

class OperationProgress(_message.Message):
    __slots__ = ("phase", "done", "total")
    PHASE_FIELD_NUMBER: _ClassVar[int]
    DONE_FIELD_NUMBER: _ClassVar[int]
    TOTAL_FIELD_NUMBER: _ClassVar[int]
    phase: str
    done: int
    total: int
    def __init__(self, phase: _Optional[str] = ..., done: _Optional[int] = ..., total: _Optional[int] = ...) -> None: ...

class Validation(_message.Message):
    __slots__ = ("k", "recall", "min_recall", "pairs")
    K_FIELD_NUMBER: _ClassVar[int]
    RECALL_FIELD_NUMBER: _ClassVar[int]
    MIN_RECALL_FIELD_NUMBER: _ClassVar[int]
    PAIRS_FIELD_NUMBER: _ClassVar[int]
    k: int
    recall: float
    min_recall: float
    pairs: int
    def __init__(self, k: _Optional[int] = ..., recall: _Optional[float] = ..., min_recall: _Optional[float] = ..., pairs: _Optional[int] = ...) -> None: ...

class RebuildIndexMetadata(_message.Message):
    __slots__ = ("state", "progress", "validation")
    class State(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
        __slots__ = ()
        STATE_UNSPECIFIED: _ClassVar[RebuildIndexMetadata.State]
        RUNNING: _ClassVar[RebuildIndexMetadata.State]
        SUCCEEDED: _ClassVar[RebuildIndexMetadata.State]
        FAILED: _ClassVar[RebuildIndexMetadata.State]
        CANCELLED: _ClassVar[RebuildIndexMetadata.State]
    STATE_UNSPECIFIED: RebuildIndexMetadata.State
    RUNNING: RebuildIndexMetadata.State
    SUCCEEDED: RebuildIndexMetadata.State
    FAILED: RebuildIndexMetadata.State
    CANCELLED: RebuildIndexMetadata.State
    STATE_FIELD_NUMBER: _ClassVar[int]
    PROGRESS_FIELD_NUMBER: _ClassVar[int]
    VALIDATION_FIELD_NUMBER: _ClassVar[int]
    state: RebuildIndexMetadata.State
    progress: OperationProgress
    validation: Validation
    def __init__(self, state: _Optional[_Union[RebuildIndexMetadata.State, str]] = ..., progress: _Optional[_Union[OperationProgress, _Mapping]] = ..., validation: _Optional[_Union[Validation, _Mapping]] = ...) -> None: ...

class RebuildIndexResponse(_message.Message):
    __slots__ = ("generation", "validation")
    GENERATION_FIELD_NUMBER: _ClassVar[int]
    VALIDATION_FIELD_NUMBER: _ClassVar[int]
    generation: str
    validation: Validation
    def __init__(self, generation: _Optional[str] = ..., validation: _Optional[_Union[Validation, _Mapping]] = ...) -> None: ...

class UpsertRequest(_message.Message):
    __slots__ = ("entries", "request_id")
    ENTRIES_FIELD_NUMBER: _ClassVar[int]
    REQUEST_ID_FIELD_NUMBER: _ClassVar[int]
    entries: _containers.RepeatedCompositeFieldContainer[CatalogEntry]
    request_id: str
    def __init__(self, entries: _Optional[_Iterable[_Union[CatalogEntry, _Mapping]]] = ..., request_id: _Optional[str] = ...) -> None: ...

class UpsertResponse(_message.Message):
    __slots__ = ("upserted",)
    UPSERTED_FIELD_NUMBER: _ClassVar[int]
    upserted: int
    def __init__(self, upserted: _Optional[int] = ...) -> None: ...

class DeleteRequest(_message.Message):
    __slots__ = ("keys", "request_id")
    KEYS_FIELD_NUMBER: _ClassVar[int]
    REQUEST_ID_FIELD_NUMBER: _ClassVar[int]
    keys: _containers.RepeatedScalarFieldContainer[str]
    request_id: str
    def __init__(self, keys: _Optional[_Iterable[str]] = ..., request_id: _Optional[str] = ...) -> None: ...

class DeleteResponse(_message.Message):
    __slots__ = ("deleted",)
    DELETED_FIELD_NUMBER: _ClassVar[int]
    deleted: int
    def __init__(self, deleted: _Optional[int] = ...) -> None: ...
