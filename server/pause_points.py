"""A test hook that stops the process at a named point, so that a kill test's SIGKILL lands
exactly there (between two steps of a rebuild, say) instead of wherever a timer happens to fall.

    JOINTSPACE_PAUSE_AT=live JOINTSPACE_PAUSE_FILE=/tmp/paused jointspace serve ...

At the point named by JOINTSPACE_PAUSE_AT the process writes the name into JOINTSPACE_PAUSE_FILE
and sleeps until it is killed. Unset (always, outside tests), a pause point costs one dictionary
lookup. The points are a rebuild's phases (operations.py reports them): "embedding" (the first
batch is embedded), "indexing" (the first FAISS file is written into the staging folder),
"placed" (the new generation is renamed into place, not live), "validating", "swapping"; and
"live" (`CURRENT` names the new generation, the server has not swapped to it yet).

With JOINTSPACE_RESUME_FILE also set, the process goes on once that file appears (and removes
it): a test can change files at the point (corrupt a new generation, say) and let the work go on.
"""

from __future__ import annotations

import os
import time
from pathlib import Path

PAUSE_AT = "JOINTSPACE_PAUSE_AT"
PAUSE_FILE = "JOINTSPACE_PAUSE_FILE"
RESUME_FILE = "JOINTSPACE_RESUME_FILE"


def pause_point(name: str) -> None:
    if os.environ.get(PAUSE_AT) != name:
        return
    Path(os.environ[PAUSE_FILE]).write_text(name)
    resume = os.environ.get(RESUME_FILE)
    while resume is None:
        time.sleep(3600)
    while not Path(resume).is_file():
        time.sleep(0.01)
    Path(resume).unlink()
