"""Run by test_client_package.py with the Python of a venv that holds only the client
distribution: calls a real server with both clients and prints what it saw as one JSON object.

    python client_alone.py HOST:PORT
"""

from __future__ import annotations

import asyncio
import json
import sys

from jointspace.client import AsyncClient, Client, InvalidArgument


def main(target: str) -> None:
    with Client(target, timeout=30) as client:
        client.wait_ready(timeout=60)
        hits = client.search(text="seven", k=3)
        try:
            client.search(text="seven", k=0)
            error = None
        except InvalidArgument as raised:
            error = {"type": type(raised).__name__, "field": raised.field, "reason": raised.reason}
        info = client.info()

    async def asynchronously() -> list[str]:
        async with AsyncClient(target, timeout=30) as aio:
            return [h.key for h in await aio.search(text="seven", k=3)]

    try:
        import jointspace.server  # noqa: F401

        has_server = True
    except ImportError:
        has_server = False
    print(json.dumps({
        "keys": [h.key for h in hits], "async_keys": asyncio.run(asynchronously()), "error": error,
        "generation": info.generation, "tensorflow_loaded": "tensorflow" in sys.modules, "has_server": has_server,
    }))


if __name__ == "__main__":
    main(sys.argv[1])
