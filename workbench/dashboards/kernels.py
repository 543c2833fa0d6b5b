"""The kernel manager of ``workbench serve``: at most ``max_kernels`` kernels, a "busy" page beyond.

Every page view of a Voilà dashboard starts a kernel (~250 MB here), and a closed page's kernel
lives until it is culled: without a bound, anyone who can load the page can exhaust memory.
:class:`CappedKernelManager` (configured through the server's private ``voila.json`` as
``VoilaConfiguration.multi_kernel_manager_class``) refuses to start a viewer's kernel once
``max_kernels`` are running (the preheated ones included): the viewer gets HTTP 503 and a short
"busy, try again in a minute" page. A preheated kernel waits for a free slot instead of failing,
and while it waits Voilà is told the pool is empty, so viewers get the busy page, not a hang.
A viewer is handed a pooled kernel that finished preheating before one still starting.

Imported by the Voilà process only (keep it light: no workbench imports).
"""
from __future__ import annotations

import asyncio

from jupyter_server.services.kernels.kernelmanager import AsyncMappingKernelManager
from tornado import web
from traitlets import Integer

# Shown as the page's heading ("503: ...") and HTTP reason: Voilà's error page shows no more.
BUSY_MESSAGE = ("The dashboards are busy (all {n} viewer slots are in use); please try again in "
                "a minute")


def _ready(task) -> bool:
    """A pooled kernel's preheating task is done and succeeded."""
    return task.done() and not task.cancelled() and task.exception() is None


class CappedKernelManager(AsyncMappingKernelManager):
    """An :class:`AsyncMappingKernelManager` that runs at most ``max_kernels`` kernels."""

    max_kernels = Integer(8, config=True, help="Kernels running at once, preheated ones included.")

    def __init__(self, **kwargs):
        self._starting = 0  # kernels being started (not yet in list_kernel_ids())
        self._waiting = 0  # preheated kernels waiting for a free slot
        self._closing = False
        super().__init__(**kwargs)

    def __init_subclass__(cls, **kwargs):
        """Voilà's preheating subclass (built by ``voila_kernel_manager_factory``) counts a pooled
        kernel that is still waiting for a slot as available; offer none while one waits."""
        super().__init_subclass__(**kwargs)
        own = cls.__dict__.get("get_pool_size")
        if own is not None:
            def get_pool_size(self, notebook_name: str, _own=own) -> int:
                return 0 if self._waiting else _own(self, notebook_name)

            cls.get_pool_size = get_pool_size
        render = cls.__dict__.get("get_rendered_notebook")
        if render is not None:
            async def get_rendered_notebook(self, notebook_name: str, *args, _render=render,
                                            **kwargs):
                """Hand the viewer a kernel that finished preheating, not the oldest one
                (Voilà takes the first of its pool, which may still be starting)."""
                pool = getattr(self, "_pools", {}).get(notebook_name)
                if pool:
                    pool.sort(key=lambda task: not _ready(task))  # stable: ready ones first
                return await _render(self, notebook_name, *args, **kwargs)

            cls.get_rendered_notebook = get_rendered_notebook

    def kernels_in_use(self) -> int:
        """Kernels running or starting."""
        return len(self.list_kernel_ids()) + self._starting

    async def start_kernel(self, *, kernel_id=None, path=None, **kwargs):
        if kernel_id is None:  # a new kernel (not a restart)
            preheat = (kwargs.get("env") or {}).get("VOILA_PREHEAT") == "True"
            if self.kernels_in_use() >= self.max_kernels:
                if not preheat:
                    self.log.warning("Kernel limit (%s) reached: a viewer got the busy page",
                                     self.max_kernels)
                    busy = BUSY_MESSAGE.format(n=self.max_kernels)
                    raise web.HTTPError(503, busy, reason=busy)
                self._waiting += 1
                try:
                    while self.kernels_in_use() >= self.max_kernels:
                        if self._closing:
                            raise RuntimeError("server shutting down")
                        await asyncio.sleep(0.5)
                finally:
                    self._waiting -= 1
        self._starting += 1
        try:
            return await super().start_kernel(kernel_id=kernel_id, path=path, **kwargs)
        finally:
            self._starting -= 1

    async def shutdown_all(self, *args, **kwargs):
        self._closing = True
        return await super().shutdown_all(*args, **kwargs)
