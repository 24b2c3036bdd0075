"""An index directory holds generations; `CURRENT` names the live one.

    INDEX/CURRENT            "gen-000002\n"
    INDEX/gen-000001/        generation.json, index-<modality>.faiss, catalog.sqlite
    INDEX/gen-000002/
    INDEX/.staging-<random>/ a build in progress (removed on the next start if it died)

A generation is written completely in a staging directory, renamed into place, and only then
named by `CURRENT`, which is replaced by an atomic rename. A crash at any point therefore leaves
`CURRENT` naming a complete generation. A server's rebuild leaves a gap between the rename and
the switch (it loads and checks the new generation first); a generation newer than the live one
is therefore the leftover of a rebuild that died or was refused, and is removed with the rest.
"""

from __future__ import annotations

import hashlib
import os
import re
import secrets
import shutil
from pathlib import Path

from jointspace.core.errors import NotFound, NotReady
from jointspace.server.index.write_sites import write_site

CURRENT = "CURRENT"
MANIFEST = "generation.json"
_GENERATION = re.compile(r"^gen-(\d{6,})$")


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def generation_number(name: str) -> int:
    match = _GENERATION.match(name)
    if match is None:
        raise ValueError(f"{name!r} is not a generation name (gen-NNNNNN)")
    return int(match.group(1))


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


class IndexDirectory:
    def __init__(self, root: Path) -> None:
        self.root = Path(root)

    def generations(self) -> list[str]:
        if not self.root.is_dir():
            return []
        names = (p.name for p in self.root.iterdir() if _GENERATION.match(p.name) and p.is_dir())
        return sorted(names, key=generation_number)

    def current_name(self) -> str | None:
        marker = self.root / CURRENT
        if not marker.is_file():
            return None
        name = marker.read_text().strip()
        return name if _GENERATION.match(name) and (self.root / name).is_dir() else None

    def current_path(self) -> Path:
        if not self.root.is_dir():
            raise NotFound(f"{self.root}: no such index directory")
        name = self.current_name()
        if name is None:
            raise NotReady(f"{self.root}: no live generation (no valid {CURRENT} file)")
        return self.root / name

    def staging(self) -> Path:
        self.root.mkdir(parents=True, exist_ok=True)
        path = self.root / f".staging-{secrets.token_hex(6)}"
        path.mkdir()
        return path

    def publish(self, staging: Path) -> str:
        """Move a complete staging directory into place and make it live."""
        name = self.place(staging)
        self.make_live(name)
        return name

    def place(self, staging: Path) -> str:
        """Move a complete staging directory into place as the next generation, not yet live."""
        for file in staging.iterdir():
            with file.open("rb") as handle:
                os.fsync(handle.fileno())
        existing = [generation_number(n) for n in self.generations()]
        name = f"gen-{max(existing, default=0) + 1:06d}"
        os.replace(staging, self.root / name)
        _fsync_dir(self.root)
        return name

    def make_live(self, name: str) -> None:
        """Point `CURRENT` at a placed generation (atomic rename, then the folder is synced)."""
        marker = self.root / f".{CURRENT}.{secrets.token_hex(4)}"
        with write_site("current", f"switching {CURRENT} to {name}"):
            marker.write_text(name + "\n")
            with marker.open("rb") as handle:
                os.fsync(handle.fileno())
            os.replace(marker, self.root / CURRENT)
            _fsync_dir(self.root)

    def remove(self, name: str) -> None:
        """Delete a generation that is not live (a refused rebuild's, or one past retention)."""
        if name == self.current_name():
            raise NotReady(f"{name} is live and cannot be removed")
        shutil.rmtree(self.root / name, ignore_errors=True)

    def remove_partials(self) -> list[str]:
        """Delete leftovers of builds that died: staging folders, half-written `CURRENT` markers
        and generations newer than the live one (placed, never switched to). Without a live
        generation no generation is touched: that is a damaged directory, not a leftover."""
        removed = []
        if self.root.is_dir():
            for path in self.root.iterdir():
                if path.name.startswith((".staging-", f".{CURRENT}.")):
                    shutil.rmtree(path) if path.is_dir() else path.unlink()
                    removed.append(path.name)
            live = self.current_name()
            if live is not None:
                for name in self.generations():
                    if generation_number(name) > generation_number(live):
                        shutil.rmtree(self.root / name)
                        removed.append(name)
        return removed

    def prune(self, keep: int) -> list[str]:
        """Delete the oldest generations beyond the `keep` newest (the live one among them)."""
        live = self.current_name()
        if live is None:
            return []
        older = [n for n in self.generations() if generation_number(n) < generation_number(live)]
        doomed = older[: max(0, len(older) - (keep - 1))]
        for name in doomed:
            shutil.rmtree(self.root / name, ignore_errors=True)
        return doomed
