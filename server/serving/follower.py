"""A read replica follows the writer over the same index directory: the generations the writer
publishes (`CURRENT`) and its acknowledged online changes (the journal), polled every
`interval` seconds; the replica itself writes nothing there (engine.py's `read_only`).

Each poll reads `CURRENT` (one small file) and the journal's rows numbered after the last one
applied (journal.py says why that misses none and repeats none). New rows are applied like the
writer's own writes: one new `Changes` value, swapped in by one reference assignment; the
journal holds each upsert's vector, so nothing is embedded again (except while an older
generation stands in for a damaged live one, fallback.py). A new generation is loaded in this
thread, every file checked as at start, while queries go on being answered from the old one;
then the new one and its journalled changes are swapped in the same way. So a change the writer
acknowledged is served by a replica within one interval plus the time to read and apply it, and
a new generation within one interval plus the time to load it; until then the replica answers
from what it had, never with an error.

A generation that fails to load here (a damaged file, a model folder this replica cannot read) is
logged and not retried until `CURRENT` names another: the replica keeps serving the one before.
"""

from __future__ import annotations

import logging
import threading

from jointspace.core.errors import JointspaceError, NotReady, log_internal
from jointspace.encoders.inference import EncoderSet
from jointspace.server.index.generation import Generation
from jointspace.server.serving.engine import Engine, check_pair, load_changes, with_journalled

logger = logging.getLogger(__name__)


class Follower:
    def __init__(self, engine: Engine, interval: float) -> None:
        if not engine.read_only:
            raise ValueError("only a read replica's engine follows a writer")
        self.engine, self.interval = engine, interval
        self._through = engine.loaded_through  # the newest journal number served
        self._refused = ""  # a generation that failed to load, not retried
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="jointspace-follower", daemon=True)

    def start(self) -> Follower:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        self._thread.join()

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            try:
                self.poll()
            except JointspaceError as error:  # a journal being restored, say: the next poll retries
                logger.warning("following the writer: %s; retrying in %g s", error, self.interval)
            except Exception as error:  # a bug: logged under an id, the replica goes on serving
                log_internal(logger, "following the writer", error)

    def poll(self) -> None:
        """One step: the generation `CURRENT` names if it is not the one served, else the
        journal's new changes."""
        engine = self.engine
        served = engine.served
        live = engine.index_dir.current_name()
        if live is not None and live != served.journal_name:
            if live != self._refused:
                self._switch(live)
            return
        new = engine.journal.changes(served.journal_name, after=self._through)
        if new:
            engine.adopt(with_journalled(served, new))
            self._through = max(change.number for change in new)

    def _switch(self, name: str) -> None:
        engine = self.engine
        try:
            generation = Generation(engine.index_dir.root / name)
            encoders = self._encoders_for(generation)
            check_pair(encoders, generation)
        except JointspaceError as error:
            self._refused = name
            logger.error("the writer's generation %s cannot be served here (%s); still serving %s",
                         name, error, engine.served.generation.name)
            return
        served, self._through = load_changes(engine.journal, encoders, generation, name)
        engine.adopt(served)
        logger.info("serving %s (model %s), published by the writer", name, encoders.version,
                    extra={"generation": name})

    def _encoders_for(self, generation: Generation) -> EncoderSet:
        """The model served, or the one the writer's rebuild switched to (the manifest names its
        folder, read through the data directory)."""
        current = self.engine.served.encoders
        pinned = generation.manifest.model_dir
        if generation.model_version == current.version:
            return current
        if not pinned:
            raise NotReady(f"{generation.name} was embedded by model {generation.model_version} and names no "
                           f"model folder; restart this replica with --model of that version")
        return EncoderSet(self.engine.data_dir.confine(pinned, "model"), self.engine.limits)
