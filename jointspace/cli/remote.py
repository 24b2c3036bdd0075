"""`query`, `rebuild` and `info`: calls to a running server, through jointspace.client.

The connection options and the Client they make live here, the only commands that use them; the
client (gRPC) is imported only when a command runs.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from jointspace.cli.arguments import lexical_weight
from jointspace.core.errors import InvalidInput, JointspaceError
from jointspace.core.lexical_weight import DEFAULT_LEXICAL_WEIGHT

if TYPE_CHECKING:
    from jointspace.client import Client


def add_commands(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """`commands`: the root parser's subparsers."""
    query = commands.add_parser("query", help="search a running server")
    _add_connection_args(query)
    kind = query.add_mutually_exclusive_group(required=True)
    kind.add_argument("--id")
    kind.add_argument("--ids", help="comma-separated ids, e.g. a watch history")
    kind.add_argument("--text")
    kind.add_argument("--audio", metavar="FILE")
    kind.add_argument("--vector", help="comma-separated floats")
    query.add_argument("-k", type=int, default=10)
    query.add_argument("--modality", action="append", help="result modality (repeatable; default all)")
    query.add_argument("--exclude", action="append", metavar="KEY", help="key never to return (repeatable)")
    query.add_argument("--seen", metavar="IDS", help="comma-separated ids the user has seen, never returned")
    own = query.add_mutually_exclusive_group()
    own.add_argument("--exclude-query-ids", dest="exclude_query_ids", action="store_const", const=True,
                     help="never return the query's own ids (the default for --ids)")
    own.add_argument("--keep-query-ids", dest="exclude_query_ids", action="store_const", const=False,
                     help="let the query's own ids come back (a history's films included)")
    query.add_argument("--filter", action="append", metavar="FIELD=VALUE",
                       help="only hits whose metadata FIELD is VALUE (repeatable; one field twice: either value)")
    query.add_argument("--hybrid", action="store_true",
                       help="a text query also searches the catalog's words (BM25, one typo forgiven) and fuses "
                            f"both rankings, with lexical weight {DEFAULT_LEXICAL_WEIGHT:g}")
    query.add_argument("--lexical-weight", type=lexical_weight, metavar="W",
                       help="hybrid search with this weight: 0 = vectors alone, 1 = words alone (implies --hybrid)")
    query.add_argument("--json", action="store_true", help='print {"hits": [...]}')
    query.add_argument("--timeout", type=float, default=30.0, help="deadline in seconds")
    query.set_defaults(func=cmd_query)

    rebuild = commands.add_parser(
        "rebuild", help="rebuild a running server's index from catalog files, without stopping it",
        description="Catalog, model and validation paths are read by the server; files that exist here are "
                    "sent as absolute paths. A second rebuild while one runs is refused (ABORTED).")
    _add_connection_args(rebuild)
    rebuild.add_argument("catalogs", nargs="+", type=Path, metavar="CATALOG")
    rebuild.add_argument("--index", default="", help="auto (default), flat, hnsw, ivfpq or a FAISS factory string")
    rebuild.add_argument("--model", type=Path, metavar="DIR",
                         help="embed with this model and switch model and index together")
    rebuild.add_argument("--validation-pairs", type=Path, metavar="FILE",
                         help='gate: rows of {"key": ..., <query field>: ...}; swap only if recall is reached')
    rebuild.add_argument("--min-recall", type=float, default=0.0, help="gate: minimum recall@k, in (0, 1]")
    rebuild.add_argument("--validation-k", type=int, default=0, help="gate: k (default: 10)")
    rebuild.add_argument("--includes-changes-through", type=int, default=0, metavar="N",
                         help="the catalogs already hold the online changes up to number N (the last_change "
                              "`jointspace info` showed when they were exported): those are not carried over "
                              "(default 0: every online change is carried over)")
    rebuild.add_argument("--wait", action="store_true", help="show progress until it is done; exit 1 if it fails")
    rebuild.add_argument("--timeout", type=float, default=30.0, help="deadline of each call, in seconds")
    rebuild.set_defaults(func=cmd_rebuild)

    info = commands.add_parser("info", help="what a running server serves")
    _add_connection_args(info)
    info.add_argument("--json", action="store_true")
    info.add_argument("--timeout", type=float, default=10.0)
    info.set_defaults(func=cmd_info)


def _add_connection_args(parser: argparse.ArgumentParser) -> None:
    """Where the server is and how to prove who we are; `_connect` reads them back."""
    parser.add_argument("--target", default="127.0.0.1:50051", metavar="HOST:PORT")
    parser.add_argument("--tls", action="store_true", help="connect with TLS, trusting the system's CAs")
    parser.add_argument("--tls-ca", type=Path, metavar="PEM",
                        help="connect with TLS, trusting this CA (the one that signed the server's certificate)")
    parser.add_argument("--tls-cert", type=Path, metavar="PEM", help="client certificate, for mutual TLS")
    parser.add_argument("--tls-key", type=Path, metavar="PEM", help="the client certificate's private key")
    parser.add_argument("--token-file", type=Path, metavar="FILE",
                        help="file holding a bearer token (default: $JOINTSPACE_TOKEN, if set)")


def _connect(args: argparse.Namespace) -> Client:
    from jointspace.client import Client

    token = os.environ.get("JOINTSPACE_TOKEN") or None
    if args.token_file is not None:
        try:
            token = args.token_file.read_text().strip()
        except OSError as error:
            raise InvalidInput(f"--token-file {args.token_file}: {error.strerror}") from None
        if not token:
            raise InvalidInput(f"--token-file {args.token_file}: empty")
    return Client(args.target, timeout=args.timeout, tls=args.tls, tls_ca=args.tls_ca, tls_cert=args.tls_cert,
                  tls_key=args.tls_key, token=token)


def _id_list(text: str | None) -> list[str]:
    """`a,b,,c` → [a, b, c]; none given → []."""
    return [i for i in (text or "").split(",") if i]


def _query_kwargs(args: argparse.Namespace) -> dict[str, Any]:
    if args.ids is not None:
        return {"ids": _id_list(args.ids)}
    if args.audio is not None:
        path = Path(args.audio)
        if not path.is_file():
            raise InvalidInput(f"--audio {args.audio}: no such file")
        return {"audio_path": path}
    if args.vector is not None:
        try:
            return {"vector": [float(x) for x in args.vector.split(",")]}
        except ValueError:
            raise InvalidInput("--vector: expected comma-separated numbers") from None
    return {"id": args.id} if args.id is not None else {"text": args.text}


def _filters(texts: Sequence[str] | None) -> dict[str, list[Any]]:
    """--filter FIELD=VALUE (repeatable; a field given twice matches either value). VALUE is read
    as JSON when it is a number or true/false, else as a string."""
    filters: dict[str, list[Any]] = {}
    for text in texts or ():
        field, sep, value = text.partition("=")
        if not sep or not field:
            raise InvalidInput(f"--filter {text!r}: expected FIELD=VALUE")
        try:
            parsed = json.loads(value)
        except json.JSONDecodeError:
            parsed = value
        filters.setdefault(field, []).append(parsed if isinstance(parsed, (int, float, bool)) else value)
    return filters


def _lexical_weight(args: argparse.Namespace) -> float | None:
    """The weight of a hybrid search (--lexical-weight, or the default with --hybrid); None: none."""
    weight = args.lexical_weight if args.lexical_weight is not None else (
        DEFAULT_LEXICAL_WEIGHT if args.hybrid else None)
    if weight is not None and args.text is None:
        raise InvalidInput("--hybrid: only a --text query has words to search")
    return weight


def cmd_query(args: argparse.Namespace) -> int:
    weight = _lexical_weight(args)
    with _connect(args) as client:
        hits = client.search(k=args.k, modalities=args.modality or (), exclude=args.exclude or (),
                             filters=_filters(args.filter), lexical_weight=weight,
                             exclude_query_ids=args.exclude_query_ids, seen_ids=_id_list(args.seen),
                             **_query_kwargs(args))
    if args.json:
        print(json.dumps({"hits": [h.to_dict() for h in hits]}))
    else:
        for rank, hit in enumerate(hits, 1):
            meta = f"  {json.dumps(hit.metadata)}" if hit.metadata else ""
            sides = f"  [{'+'.join(hit.found_by)}]" if hit.found_by else ""
            print(f"{rank:3d}. {hit.score:7.4f}  {hit.modality:6s} {hit.key}{sides}{meta}")
    return 0


def _server_path(path: Path) -> str:
    """A file that exists here is sent as an absolute path (client and server on one machine);
    anything else as given, for the server to resolve (against its --data-dir, if it has one)."""
    return str(path.resolve()) if path.exists() else str(path)


def _show_progress(name: str) -> Callable[[Any], None]:
    """A callback for Client.wait: one progress bar per phase of the operation."""
    from jointspace.core.progress import Progress

    shown: dict[str, Any] = {}

    def show(operation: Any) -> None:
        phase = operation.progress.phase
        if shown.get("phase") != phase:
            if shown.get("bar") is not None:
                shown["bar"].close()
            unit = "row" if phase == "embedding" else "step"
            shown.update(phase=phase, bar=Progress(operation.progress.total or None, f"{name}: {phase}", unit=unit))
        bar = shown["bar"]
        if operation.progress.done > bar.done:
            bar.update(operation.progress.done - bar.done)
        if operation.done:
            bar.close()

    return show


def cmd_rebuild(args: argparse.Namespace) -> int:
    with _connect(args) as client:
        operation = client.rebuild([_server_path(c) for c in args.catalogs], args.index,
                                   _server_path(args.model) if args.model else None,
                                   _server_path(args.validation_pairs) if args.validation_pairs else None,
                                   args.min_recall, args.validation_k,
                                   includes_changes_through=args.includes_changes_through)
        if not args.wait:
            print(operation.name)
            return 0
        operation = client.wait(operation.name, on_progress=_show_progress(operation.name))
    gate = operation.validation
    figures = f" (recall@{gate.k} {gate.recall:.3f} over {gate.pairs} pairs)" if gate else ""
    if operation.error is not None:
        raise JointspaceError(f"{operation.name} {operation.state.name.lower()}: "
                              f"{operation.error.code.name}: {operation.error.message}{figures}")
    print(f"{operation.name}: {operation.generation} is live{figures}")
    return 0


def cmd_info(args: argparse.Namespace) -> int:
    with _connect(args) as client:
        info = client.info()
    print(json.dumps(dataclasses.asdict(info), indent=None if args.json else 2))
    return 0
