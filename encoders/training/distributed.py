"""Training past one machine with tf.distribute: a cluster's roles, its strategy, the model it exports.

Two layouts, chosen by the cluster spec (TF_CONFIG's form, `{"cluster": {...}, "task": {...}}`):

- **Data-parallel** (`worker` tasks, optionally a `chief`, no `ps`): `MultiWorkerMirroredStrategy`.
  Every task reads the same pair files (the vocabularies and the batch schedule must be the same
  everywhere) and draws the same global batches from the same seed; each takes its own slice
  (`DataParallel.shard_batches`), so `--batch-size` is the global batch and a row's in-batch
  negatives are the other rows of its worker's slice. Gradients are summed over the workers with
  every row's weight divided by their number, so a step moves the weights as one step on the
  global batch's mean would. The chief (or worker 0) exports.
- **Parameter servers** (`chief`, `worker` and `ps` tasks): `ParameterServerStrategy`. Variables
  live on the ps tasks, those larger than `min_shard_bytes` (the id tables) split into shards over
  them, so a table need not fit one machine; the chief is the coordinator: it reads the rows,
  sends each step its batch through `ClusterCoordinator` to a free worker and exports. Worker and
  ps tasks only serve (`serve`) until the chief has gone.

The trainer's loop is the same in both (trainer.train with a `distribution`): the whole run stands
in the strategy's scope, and only the step and the batches a task takes differ. The export is
built from plain copies of the trained weights, gathered from replicas or shards (`gathered`): a
single-machine SavedModel without distributed variables or device placements, which `index
build` and `serve` load unchanged, and whose saving needs no collective op, so only the chief
writes.
"""

from __future__ import annotations

import socket
import time
from collections.abc import Callable
from dataclasses import replace
from typing import Any

import numpy as np

from jointspace.core.errors import InvalidInput
from jointspace.core.progress import log
from jointspace.data.pairs import PairRows, modality_of
from jointspace.encoders.base import tf
from jointspace.encoders.training.cluster import DEFAULT_MIN_SHARD_BYTES, ClusterTask
from jointspace.encoders.training.config import TrainConfig
from jointspace.encoders.training.trainer import Batches, TrainedModel, train

CHIEF_POLL_S = 1.0  # how often a serving task checks that the chief is still there


def _resolver(task: ClusterTask) -> tf.distribute.cluster_resolver.ClusterResolver:
    return tf.distribute.cluster_resolver.SimpleClusterResolver(
        tf.train.ClusterSpec(task.cluster), task_type=task.role, task_id=task.index, rpc_layer="grpc")


class DataParallel:
    """`MultiWorkerMirroredStrategy`: one replica per task, each on its slice of every global batch.
    Must be made before any other TensorFlow op runs in the process (collective ops are set up
    at start-up)."""

    def __init__(self, task: ClusterTask) -> None:
        self.strategy = tf.distribute.MultiWorkerMirroredStrategy(cluster_resolver=_resolver(task))
        self.workers = len(task.cluster.get("chief", [])) + len(task.cluster["worker"])
        self.rank = 0 if task.role == "chief" else len(task.cluster.get("chief", [])) + task.index
        if self.strategy.num_replicas_in_sync != self.workers:
            raise InvalidInput(f"data-parallel training takes one device per task: {self.workers} tasks "
                               f"but {self.strategy.num_replicas_in_sync} replicas")

    def shard_batches(self, batches: Batches) -> Batches:
        """This task's slice of each global batch. Every task gets the same number of steps of the
        same pair types (each step is a collective); a batch too small to leave every task two
        rows (one positive, one negative) is skipped by all of them."""
        return [(pair, rows[self.rank :: self.workers]) for pair, rows in batches
                if len(rows) >= 2 * self.workers]

    def step(self, update: Callable[[dict], tf.Tensor]) -> Callable[[dict], tf.Tensor]:
        """`update` as a replica step; the loss returned is the mean over the tasks."""
        run = _replicated(self.strategy, update)
        # The gradients are summed over the tasks: 1/tasks of each row's weight makes that sum the
        # mean's gradient (and the summed loss the mean loss).
        return lambda batch: run({**batch, "weight": batch["weight"] / np.float32(self.workers)})


class ParameterServers:
    """`ParameterServerStrategy` with a `ClusterCoordinator` (in the chief): variables on the ps
    tasks, partitioned into up to `max_shards` shards of at least `min_shard_bytes`; steps on
    whichever worker is free. The coordinator waits for each step's loss (the trainer checks it
    for divergence before the next), so one step runs at a time: the cluster lends the tables
    memory, not speed."""

    def __init__(self, task: ClusterTask, max_shards: int | None = None,
                 min_shard_bytes: int = DEFAULT_MIN_SHARD_BYTES) -> None:
        partitioner = tf.distribute.experimental.partitioners.MinSizePartitioner(
            min_shard_bytes=min_shard_bytes, max_shards=max_shards or len(task.cluster["ps"]))
        self.strategy = tf.distribute.experimental.ParameterServerStrategy(
            _resolver(task), variable_partitioner=partitioner)
        self.coordinator = tf.distribute.experimental.coordinator.ClusterCoordinator(self.strategy)

    def shard_batches(self, batches: Batches) -> Batches:
        return batches  # each step's whole batch goes to one worker

    def step(self, update: Callable[[dict], tf.Tensor]) -> Callable[[dict], tf.Tensor]:
        run = _replicated(self.strategy, update)
        return lambda batch: self.coordinator.schedule(run, args=(batch,)).fetch()


def _replicated(strategy: tf.distribute.Strategy, update: Callable[[dict], tf.Tensor]) -> Callable[[dict], tf.Tensor]:
    """`update` run on the strategy's replicas as one tf.function, their losses summed."""

    @tf.function(reduce_retracing=True)
    def run(batch: dict) -> tf.Tensor:
        return strategy.reduce(tf.distribute.ReduceOp.SUM, strategy.run(update, args=(batch,)), axis=None)

    return run


def train_on_cluster(task: ClusterTask, rows: PairRows, config: TrainConfig, max_shards: int | None = None,
                     min_shard_bytes: int = DEFAULT_MIN_SHARD_BYTES,
                     on_step: Callable[[int, int], None] | None = None) -> TrainedModel | None:
    """Train as `task` (a training task: `task.trains`); the chief gets the model to export, as
    plain single-machine towers (`gathered`), the other tasks None. `on_step` as in
    trainer.train (this task's examples); the totals are logged at the end."""
    distribution = (ParameterServers(task, max_shards, min_shard_bytes) if task.parameter_servers
                    else DataParallel(task))
    log(f"training as {task.role} {task.index} of a "
        f"{'parameter-server' if task.parameter_servers else 'data-parallel'} cluster "
        f"({', '.join(f'{len(a)} {r}' for r, a in sorted(task.cluster.items()))})")
    done = [0, 0]

    def count(steps: int, examples: int) -> None:
        done[:] = steps, examples
        if on_step is not None:
            on_step(steps, examples)

    with distribution.strategy.scope():
        trained = train(rows, config, count, distribution)
    log(f"{task.role} {task.index} trained {done[0]} steps on {done[1]} examples")
    for line in shard_summary(trained):
        log(line)
    return gathered(trained, rows) if task.is_chief else None


def shard_summary(trained: TrainedModel) -> list[str]:
    """One line per variable split over parameter servers: its name, shape, shards and devices."""
    lines = []
    for tower in trained.towers.values():
        for variable in _whole_variables(tower):
            shards = getattr(variable, "variables", [variable])
            if len(shards) > 1:
                devices = sorted({shard.device for shard in shards})
                lines.append(f"variable {shards[0].name.rpartition('/part_')[0]} {list(variable.shape)} "
                             f"in {len(shards)} shards on {', '.join(devices)}")
    return lines


def _whole_variables(layer: tf.keras.layers.Layer) -> list[Any]:
    """The layer's weights in order, a partitioned variable as one `ShardedVariable` (Keras lists
    its shards one by one; each shard points back to its container)."""
    seen: dict[int, Any] = {}
    for weight in layer.weights:
        container = getattr(weight, "_sharded_container", None)
        variable = container() if container is not None else weight
        seen.setdefault(id(variable), variable)
    return list(seen.values())


def gathered(trained: TrainedModel, rows: PairRows) -> TrainedModel:
    """The trained model with each tower rebuilt outside any strategy and given the trained
    weights, every sharded or mirrored variable read back whole: what `export_model` saves is
    then an ordinary single-machine model."""
    towers = {}
    for name, encoder in trained.encoders.items():
        tower = encoder.build_tower()
        view = next(v for p in trained.pair_types for v, e in ((p.a, p.encoder_a), (p.b, p.encoder_b))
                    if e == name)
        sample = next(value for value in rows.views[view] if value is not None)
        tower(encoder.prepare(modality_of(view), [sample]), training=False)  # makes its variables
        tower.set_weights([tf.convert_to_tensor(w).numpy() for w in _whole_variables(trained.towers[name])])
        towers[name] = tower
    return replace(trained, towers=towers)


def serve(task: ClusterTask, poll_s: float = CHIEF_POLL_S) -> None:
    """Run a worker or ps task of a parameter-server cluster: a TensorFlow server the chief
    places variables and steps on. Returns once the chief, having been reachable, is gone (the
    chief's coordinator listens on its own address while it trains)."""
    server = tf.distribute.Server(tf.train.ClusterSpec(task.cluster), job_name=task.role,
                                  task_index=task.index, protocol="grpc", start=True)
    log(f"{task.role} {task.index} serving at {server.target}; waiting for the chief")
    host, _, port = task.cluster["chief"][0].rpartition(":")
    seen = False
    while True:
        up = _listening(host, int(port))
        if seen and not up:
            log(f"{task.role} {task.index}: the chief has gone; stopping")
            return
        seen = seen or up
        time.sleep(poll_s)


def _listening(host: str, port: int) -> bool:
    try:
        with socket.create_connection((host, port), timeout=CHIEF_POLL_S):
            return True
    except OSError:
        return False
