"""Starting on a damaged index directory: serve the newest intact generation, loudly.

Every generation is checked in full when it is loaded (generation.py: checksums of every file,
then FAISS files and store against the manifest). When the live generation (the one `CURRENT`
names) fails, the server falls back to the newest older generation that passes, logs an ERROR
that names both and the reason at every start, and GetIndexInfo reports the generation it really
serves. It never starts on a generation that failed, and never serves garbage.

`CURRENT` is deliberately left as it is, and nothing is deleted or moved:
- a check can fail for a passing reason (a read error, a file being restored), and rewriting
  `CURRENT` would make the fallback permanent, and removing the damaged generation would destroy
  what an operator needs to repair it;
- several server processes may serve one directory; only the one that rebuilds writes it.
Online changes go on being journalled against the generation `CURRENT` names, and are replayed
(embedded again with the fallback's model) over the fallback: once the live generation is
repaired, a restart serves it with every change acknowledged meanwhile; the next successful
rebuild replaces both and ends the fallback. Without any intact generation the server does not
start: one line names each generation and why it failed.
"""

from __future__ import annotations

import logging

from jointspace.server.index.generation import CorruptGeneration, Generation
from jointspace.server.index.index_directory import IndexDirectory, generation_number

logger = logging.getLogger(__name__)


def open_intact_generation(directory: IndexDirectory) -> tuple[str, Generation]:
    """(the live generation's name, the generation to serve): the live one when it passes its
    checks, else the newest older one that does; CorruptGeneration when none does."""
    live = directory.current_path()  # NotFound / NotReady: no directory or no CURRENT
    try:
        return live.name, Generation(live)
    except CorruptGeneration as error:
        failures = [str(error)]
    older = [n for n in directory.generations() if generation_number(n) < generation_number(live.name)]
    for name in reversed(older):
        try:
            generation = Generation(directory.root / name)
        except CorruptGeneration as error:
            failures.append(str(error))
            continue
        logger.error("CORRUPT INDEX: the live generation %s failed its checks (%s); serving the older %s "
                     "instead. CURRENT still names %s: restore its files, or rebuild, to end the fallback",
                     live.name, failures[0], name, live.name,
                     extra={"corrupt_generation": live.name, "fallback_generation": name})
        return live.name, generation
    raise CorruptGeneration(f"no intact generation in {directory.root}: {'; '.join(failures)}")
