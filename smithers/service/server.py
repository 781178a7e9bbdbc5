"""``smithers serve``: the HTTP API on uvicorn and the worker in one event loop. SIGTERM or
SIGINT stops accepting requests, interrupts resumes in flight cleanly (each records its
attempts as interrupted and leaves its run resumable) and returns; all state is in the store,
so a restarted server loses nothing."""

from __future__ import annotations

import asyncio
import ipaddress
import signal
from collections.abc import Callable
from types import FrameType

import uvicorn

from smithers.runtime.links import base_url as env_base_url
from smithers.service.app import Service, create_app
from smithers.service.metrics import Metrics
from smithers.service.webhooks import Webhooks
from smithers.service.worker import Worker
from smithers.store.base import Store

__all__ = ["is_loopback", "run_worker", "serve"]


def is_loopback(host: str) -> bool:
    """Whether ``host`` only listens on this machine (127.0.0.0/8, ::1, localhost)."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


class _Server(uvicorn.Server):
    """uvicorn, told to stop the worker and the event streams too, and not to re-raise the
    signal after a graceful shutdown (the process then exits 0)."""

    def __init__(self, config: uvicorn.Config, on_exit: Callable[[], None]) -> None:
        super().__init__(config)
        self._on_exit = on_exit

    def handle_exit(self, sig: int, frame: FrameType | None) -> None:
        self._on_exit()
        if self.should_exit and sig == signal.SIGINT:
            self.force_exit = True
        else:
            self.should_exit = True


async def serve(
    store: Store,
    *,
    host: str,
    port: int,
    workers: int,
    base_url: str | None,
    on_ready: Callable[[str], None],
    poll: float = 1.0,
) -> None:
    """Serve the API and run the worker until SIGTERM/SIGINT.

    Args:
        store: The store to serve.
        host: The address to bind.
        port: The port (0: any free one; ``on_ready`` gets the URL).
        workers: The most resumes at once.
        base_url: The public URL for signed links (default: the bound URL).
        on_ready: Called with the URL once the server accepts connections.
        poll: Seconds between the worker's looks for news written by other processes.
    """
    metrics = Metrics(store)
    worker = Worker(
        store, workers=workers, poll=poll, base_url=base_url, on_outcome=metrics.resumed
    )
    service = Service(store, worker=worker, metrics=metrics)

    def stop() -> None:
        service.stopping.set()
        worker.stop()

    config = uvicorn.Config(
        create_app(service),
        host=host,
        port=port,
        log_level="warning",
        lifespan="off",
        timeout_graceful_shutdown=5,
        access_log=False,
    )
    server = _Server(config, stop)
    serving = asyncio.create_task(server.serve())
    while not server.started:
        if serving.done():
            await serving  # it failed to start (the port is taken): its error, as is
            return
        await asyncio.sleep(0.01)
    bound = server.servers[0].sockets[0].getsockname()[1]
    url = f"http://{host if ':' not in host else f'[{host}]'}:{bound}"
    if worker.base_url is None:
        worker.base_url = base_url or url
    on_ready(url)
    working = asyncio.create_task(worker.run_forever())
    hooks = Webhooks(store, base_url=lambda: worker.base_url or env_base_url())
    delivering = asyncio.create_task(hooks.run_forever())
    await serving
    stop()
    hooks.stop()
    await working
    await delivering


async def run_worker(
    store: Store,
    *,
    workers: int,
    base_url: str | None,
    once: bool,
    on_ready: Callable[[], None] | None = None,
) -> int:
    """``smithers worker`` (until SIGTERM/SIGINT) or ``smithers tick`` (one pass); ``on_ready``
    is called once signals are handled.

    Returns:
        How many resumes were started.
    """
    worker = Worker(store, workers=workers, base_url=base_url)
    hooks = Webhooks(store, base_url=lambda: worker.base_url or env_base_url())

    def stop() -> None:
        worker.stop()
        hooks.stop()

    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop)
    if on_ready is not None:
        on_ready()
    try:
        if once:
            started = await worker.tick()
            await hooks.tick()
            return started
        delivering = asyncio.create_task(hooks.run_forever())
        await worker.run_forever()
        await delivering
        return 0
    finally:
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.remove_signal_handler(sig)
