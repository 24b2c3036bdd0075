"""Where a Beam build on Dask runs: an existing dask.distributed scheduler, or a LocalCluster of
worker processes started for one build (`index build --runner dask --workers N`)."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager

DASK_RUNNER = "jointspace.server.build.dask_runner.DaskRunner"


def dask_pipeline_args(scheduler: str) -> list[str]:
    """Beam's options for a build on the scheduler at `scheduler` (host:port, tcp://...)."""
    return [f"--runner={DASK_RUNNER}", f"--dask_client_address={scheduler}"]


@contextmanager
def dask_scheduler(address: str | None, workers: int) -> Iterator[str]:
    """`address` itself, or the address of a LocalCluster of `workers` processes (one thread
    each: FAISS and TensorFlow use threads of their own) that lives as long as the block."""
    if address:
        yield address
        return
    from distributed import LocalCluster

    # Dask's own logs, here (scheduler, nannies) and in the workers, are not the build's
    # progress; a failed step reaches the caller as its error, reported once.
    logging.getLogger("distributed").setLevel(logging.CRITICAL)
    with LocalCluster(n_workers=workers, threads_per_worker=1, processes=True, dashboard_address=":0",
                      silence_logs=logging.CRITICAL) as cluster:
        yield cluster.scheduler_address
