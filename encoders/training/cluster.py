"""The cluster of a distributed training run: TF_CONFIG's spec, this process's role and index.

Apart from the strategies (distributed.py), without TensorFlow, so that the command line checks a
spec and refuses a bad one before loading TensorFlow.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from jointspace.core.errors import InvalidInput

ROLES = ("chief", "worker", "ps")
DEFAULT_MIN_SHARD_BYTES = 256 << 10  # variables smaller than this stay whole on one ps (TF's default)


@dataclass(frozen=True)
class ClusterTask:
    """This process's place in a cluster: every role's `host:port` addresses, its role and index."""

    cluster: dict[str, list[str]]
    role: str
    index: int

    @property
    def parameter_servers(self) -> bool:
        return "ps" in self.cluster

    @property
    def is_chief(self) -> bool:
        """The task that exports: the chief, or worker 0 of a data-parallel cluster without one."""
        return self.role == "chief" or (self.role == "worker" and self.index == 0 and "chief" not in self.cluster)

    @property
    def trains(self) -> bool:
        """Whether the task runs the training loop (reads the rows) rather than only serving."""
        return not self.parameter_servers or self.role == "chief"


def read_cluster(spec: str | None, role: str | None, index: int | None,
                 environ: Mapping[str, str]) -> ClusterTask | None:
    """The task of `--cluster SPEC` (a file or inline JSON, TF_CONFIG's form), else of the
    TF_CONFIG environment variable; `role` and `index` override the spec's `task`. None when
    neither is given: training in one process."""
    if spec is None:
        if not environ.get("TF_CONFIG"):
            if role is not None or index is not None:
                raise InvalidInput("--role and --task-index need --cluster or TF_CONFIG")
            return None
        text, source = environ["TF_CONFIG"], "TF_CONFIG"
    elif spec.lstrip().startswith("{"):
        text, source = spec, "--cluster"
    else:
        try:
            text, source = Path(spec).read_text(encoding="utf-8"), f"--cluster {spec}"
        except OSError as exc:
            raise InvalidInput(f"--cluster {spec}: cannot read it ({exc.strerror})") from None
    try:
        document = json.loads(text)
    except json.JSONDecodeError as exc:
        raise InvalidInput(f"{source}: not JSON ({exc.msg} at line {exc.lineno})") from None
    wrapped = isinstance(document, dict) and "cluster" in document  # TF_CONFIG's form, or the cluster alone
    cluster, task = (document["cluster"], document.get("task", {})) if wrapped else (document, {})
    if not isinstance(cluster, dict) or not isinstance(task, dict):
        raise InvalidInput(f"{source}: must be a JSON object, with 'cluster' and 'task' objects")
    return _checked_task(cluster, role or task.get("type"), task.get("index", 0) if index is None else index,
                         source)


def _checked_task(cluster: dict[str, Any], role: Any, index: Any, source: str) -> ClusterTask:
    for name, addresses in cluster.items():
        if name not in ROLES:
            raise InvalidInput(f"{source}: unknown role {name!r} in the cluster (roles: {', '.join(ROLES)})")
        if not isinstance(addresses, list) or not addresses or \
                not all(isinstance(a, str) and a.rpartition(":")[2].isdigit() for a in addresses):
            raise InvalidInput(f"{source}: cluster.{name} must be a non-empty list of 'host:port'")
    if len(cluster.get("chief", [])) > 1:
        raise InvalidInput(f"{source}: a cluster has at most one chief")
    if "worker" not in cluster:
        raise InvalidInput(f"{source}: the cluster has no worker")
    if "ps" in cluster and "chief" not in cluster:
        raise InvalidInput(f"{source}: a cluster with ps tasks needs a chief (the coordinator)")
    if role is None:
        raise InvalidInput(f"{source}: no task: give --role (and --task-index) or 'task' in the spec")
    if role not in cluster:
        raise InvalidInput(f"{source}: role {role!r} is not in the cluster ({', '.join(sorted(cluster))})")
    if not isinstance(index, int) or not 0 <= index < len(cluster[role]):
        raise InvalidInput(f"{source}: task index {index!r} out of range for {len(cluster[role])} {role} task(s)")
    return ClusterTask({name: list(addresses) for name, addresses in cluster.items()}, role, index)
