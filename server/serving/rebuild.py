"""A rebuild inside a serving process: build beside the live generation, check, then swap.

    reading catalog → embedding → indexing → placed (gen-N renamed into place, not live)
    → loading (gen-N read fully, checksums verified, model/index pair checked)
    → validating (the gate, when asked) → swapping (changes carried over, CURRENT switched,
    one reference assignment) → old generations beyond the retention count deleted

Queries are served from the old pair until the assignment, from the new one after it; none waits
and none fails. Whatever fails or is cancelled before the switch leaves the old pair serving and
removes the new files; a crash leaves them for `remove_partials` at the next start.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from jointspace.core.errors import Corrupt, InvalidInput, StorageError
from jointspace.core.progress import log
from jointspace.encoders.inference import EncoderSet
from jointspace.encoders.manifest import read_manifest
from jointspace.server.build import validation
from jointspace.server.build.local_builder import build_generation
from jointspace.server.index.generation import Generation
from jointspace.server.index.index_types import check_index_type
from jointspace.server.serving.engine import check_pair
from jointspace.server.serving.operations import OperationControl

if TYPE_CHECKING:
    from jointspace.server.serving.engine import Engine


@dataclass(frozen=True)
class RebuildPlan:
    catalogs: list[Path]
    index_spec: str = "auto"
    model_dir: Path | None = None  # None: the model being served
    gate: validation.Gate | None = None
    # The online changes numbered up to this are in the catalogs; later ones are carried over.
    carry_after: int = 0


def plan_rebuild(engine: Engine, catalogs: Sequence[str], index_spec: str = "", model_dir: str = "",
                 validation_pairs: str = "", min_recall: float = 0.0, validation_k: int = 0,
                 includes_changes_through: int = 0) -> RebuildPlan:
    """Check a request before any work starts, so that a typo is an error of the call, not of
    an operation that fails a moment later. Paths go through the data directory."""
    engine.check_writable()
    if not catalogs:
        raise InvalidInput("catalog_paths: empty; name at least one catalog file on the server")
    paths = [engine.data_dir.existing(c, f"catalog_paths[{i}]") for i, c in enumerate(catalogs)]
    model = engine.data_dir.existing(model_dir, "model_dir", "directory") if model_dir else None
    check_index_type(index_spec or "auto", _model_dim(engine, model), "index_type")
    gate = None
    if validation_pairs:
        pairs = engine.data_dir.existing(validation_pairs, "validation_pairs")
        gate = validation.Gate(pairs, min_recall, validation_k or validation.DEFAULT_K, engine.data_dir)
    elif min_recall:
        raise InvalidInput("min_recall: given without validation_pairs to measure it on")
    return RebuildPlan(paths, index_spec or "auto", model, gate, _included_changes(engine, includes_changes_through))


def _model_dim(engine: Engine, model: Path | None) -> int:
    """The dimension of the vectors the new index will hold: the new model's, from its manifest."""
    return engine.served.encoders.dim if model is None else read_manifest(model).dim


def _included_changes(engine: Engine, through: int) -> int:
    """A number the journal has given out: a larger one would silently drop changes not yet made."""
    last = engine.journal.last_number()
    if not 0 <= through <= last:
        raise InvalidInput(f"catalog_includes_changes_through: {through} is not a change number given so far "
                           f"(0 to {last}, IndexInfo.last_change)")
    return through


def run_rebuild(engine: Engine, plan: RebuildPlan, control: OperationControl) -> str:
    """The operation's work; returns the generation that went live. A failed write (disk full,
    I/O error) or a new generation that fails its checks fails the operation with a message that
    says the live generation keeps serving (it does: nothing is switched before the end)."""
    try:
        return _rebuild(engine, plan, control)
    except (StorageError, Corrupt) as error:
        raise type(error)(f"{error}; nothing was swapped in, {engine.served.generation.name} keeps serving") from error


def _rebuild(engine: Engine, plan: RebuildPlan, control: OperationControl) -> str:
    if plan.model_dir is not None:
        control.report("loading model", 0, 0)
        encoders = EncoderSet(plan.model_dir, engine.limits)
    else:
        encoders = engine.served.encoders
    name = build_generation(encoders, plan.catalogs, engine.index_dir.root, plan.index_spec,
                            report=control.report, go_live=False, model_dir=encoders.model_dir,
                            data_dir=engine.data_dir)
    try:
        control.report("placed", 0, 0)
        generation = Generation(engine.index_dir.root / name)
        check_pair(encoders, generation)
        if plan.gate is not None:
            control.report("validating", 0, 0)
            figures = validation.measure(encoders, generation, plan.gate)
            control.record_validation(figures)
            validation.check(figures, name, engine.served.generation.name)
        control.report("swapping", 0, 0)
        control.committed = True
        engine.swap(encoders, generation, carry_after=plan.carry_after)
    except BaseException:
        if engine.index_dir.current_name() != name:
            engine.index_dir.remove(name)
        raise
    removed = engine.index_dir.prune(engine.keep_generations)
    if removed:
        log(f"removed old generations beyond the {engine.keep_generations} kept: {', '.join(removed)}")
    return name
