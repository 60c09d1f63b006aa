"""Dask distributed clusters for the work that scales out: tile builds and whole-network scans.

:func:`dask_client` connects to the scheduler ``TWIN_DASK_SCHEDULER`` names (workers started
there with ``dask worker tcp://host:8786``, each with the project installed and the same
``TWIN_*`` database settings), or starts a :class:`distributed.LocalCluster` of worker
processes on loopback (``TWIN_DASK_WORKERS``, the cores when unset; no dashboard, quiet logs),
and closes it afterwards. :func:`using_cluster` resolves the ``cluster=`` argument of
:func:`tiles.build.build_tileset` and :func:`analysis.scan.scan_network`; :func:`run_tasks`
runs one function over many jobs on it, biggest first, hearing each result as it comes.

Workers read the twin themselves: tasks carry the settings and the keys or boxes of what to
read, never the network's rows.

``distributed`` loads tornado, dask and more (about a second): it is imported when a cluster is
used, not when this module is, so every other ``twin`` command starts at once.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager, nullcontext
from typing import TYPE_CHECKING, Any

from twin.errors import ConfigError
from twin.settings import TwinSettings

if TYPE_CHECKING:
    from distributed import Client

__all__ = ["dask_client", "using_cluster", "run_tasks", "worker_count", "Cluster"]

log = logging.getLogger(__name__)

#: What a ``cluster=`` argument may be: a client to use, True (a cluster from the settings),
#: False (none), or None (a cluster only when ``TWIN_DASK_SCHEDULER`` names one).
Cluster = Any
#: Seconds to wait for a named scheduler before giving up.
CONNECT_TIMEOUT_S = 20


@contextmanager
def dask_client(settings: TwinSettings, workers: int | None = None,
                timeout_s: float = CONNECT_TIMEOUT_S) -> Iterator[Client]:
    """A client of the settings' scheduler (waiting ``timeout_s`` for it), or of a LocalCluster
    of ``workers`` processes (``TWIN_DASK_WORKERS``, else the cores); closed (and the
    LocalCluster stopped) on exit."""
    import distributed  # noqa: PLC0415 - about a second of imports: only when a cluster is used

    if settings.dask_scheduler:
        try:
            client = distributed.Client(settings.dask_scheduler, timeout=timeout_s,
                                        set_as_default=False)
        except OSError as exc:
            raise ConfigError(f"cannot reach the Dask scheduler "
                              f"{settings.dask_scheduler}: {exc}",
                              zh=f"无法连接 Dask 调度器 {settings.dask_scheduler}：{exc}") from exc
        try:
            yield client
        finally:
            client.close()
        return
    n = workers or settings.dask_workers or os.cpu_count() or 1
    # no dashboard; the scheduler's small HTTP server (health) on a free loopback port
    cluster = distributed.LocalCluster(
        n_workers=n, threads_per_worker=1, processes=True, host="127.0.0.1", dashboard_address=None,
        silence_logs=logging.ERROR, scheduler_port=0, scheduler_kwargs={"dashboard_address": "127.0.0.1:0"})
    client = distributed.Client(cluster, set_as_default=False)
    try:
        yield client
    finally:
        client.close()
        cluster.close()


def using_cluster(settings: TwinSettings | None, cluster: Cluster) -> Any:
    """A context manager giving the client a ``cluster=`` argument asks for, or None.

    A client is used as given (and left open); True starts one from the settings; None does
    when ``TWIN_DASK_SCHEDULER`` names a scheduler; False never.
    """
    if cluster is None:
        cluster = bool(settings is not None and settings.dask_scheduler)
    if cluster is False:
        return nullcontext(None)
    if cluster is True:
        if settings is None:
            raise ConfigError("a Dask cluster needs the twin's settings: its workers read the twin",
                              zh="Dask 集群需要孪生库的设置：其工作进程要读取孪生库")
        return dask_client(settings)
    return nullcontext(cluster)


def worker_count(client: Client) -> int:
    """Workers the client's scheduler has now."""
    return len(client.scheduler_info().get("workers", {}))


def run_tasks(client: Client, fn: Callable[..., Any], jobs: Iterable[Any], *args: Any,
              done: Callable[[Any], None] | None = None) -> list[Any]:
    """``fn(job, *args)`` for every job on the cluster; the results in the order they finish.

    ``args`` (settings, a frame, a folder: small) go with every task; ``done(result)`` hears
    each result as it arrives. A task that fails raises its error here (the others are
    cancelled).
    """
    import distributed  # noqa: PLC0415 - see dask_client

    jobs = list(jobs)
    if not jobs:
        return []
    futures = [client.submit(fn, job, *args, pure=False) for job in jobs]
    results = []
    try:
        for future in distributed.as_completed(futures, loop=client.loop):
            r = future.result()
            results.append(r)
            if done is not None:
                done(r)
    except BaseException:
        client.cancel(futures)
        raise
    return results
