"""The kernel manager of ``workbench serve``: at most ``max_kernels`` kernels, a "busy" page beyond.

Every page view of a Voilà dashboard starts a kernel (~250 MB here), and a closed page's kernel
lives until it is culled: without a bound, anyone who can load the page can exhaust memory.
:class:`CappedKernelManager` (configured through the server's private ``voila.json`` as
``VoilaConfiguration.multi_kernel_manager_class``) refuses to start a viewer's kernel once
``max_kernels`` are running (the preheated ones included): the viewer waits up to
``viewer_wait`` seconds for a slot to free (a culled kernel, or the count's margin while a kernel
finishes starting), then gets HTTP 503 and a short "busy, try again in a minute" page. A
preheated kernel waits for a free slot as long as it takes, and while it waits Voilà is told the
pool is empty, so viewers get the busy page, not a hang.
A viewer is handed a pooled kernel that finished preheating before one still starting.

Imported by the Voilà process only (keep it light: no workbench imports).
"""
from __future__ import annotations

import asyncio
import time

from jupyter_server.services.kernels.kernelmanager import AsyncMappingKernelManager
from tornado import web
from traitlets import Float, Integer

# Shown as the page's heading ("503: ...") and HTTP reason: Voilà's error page shows no more.
BUSY_MESSAGE = ("The dashboards are busy (all {n} viewer slots are in use); please try again in "
                "a minute")


def _ready(task) -> bool:
    """A pooled kernel's preheating task is done and succeeded."""
    return task.done() and not task.cancelled() and task.exception() is None


class CappedKernelManager(AsyncMappingKernelManager):
    """An :class:`AsyncMappingKernelManager` that runs at most ``max_kernels`` kernels."""

    max_kernels = Integer(8, config=True, help="Kernels running at once, preheated ones included.")
    viewer_wait = Float(3.0, config=True,
                        help="Seconds a viewer's kernel waits for a free slot before the busy page.")

    def __init__(self, **kwargs):
        self._starting = 0  # kernels being started (not yet in list_kernel_ids())
        self._waiting = 0  # preheated kernels waiting for a free slot
        self._viewers = 0  # viewers' kernels waiting for a free slot (they go first)
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
        """Kernels running or starting. A kernel that is listed but whose start has not returned
        yet counts twice: a margin, since a listed id is not an exact count of processes."""
        return len(self.list_kernel_ids()) + self._starting

    async def _free_slot(self, timeout: float | None, after_viewers: bool = False) -> bool:
        """Wait until a kernel can start (``after_viewers``: and no viewer waits for one); False
        if ``timeout`` seconds (None: no limit) pass first."""
        deadline = None if timeout is None else time.monotonic() + timeout
        while self.kernels_in_use() >= self.max_kernels or (after_viewers and self._viewers):
            if self._closing:
                raise RuntimeError("server shutting down")
            if deadline is not None and time.monotonic() >= deadline:
                return False
            await asyncio.sleep(0.1)
        return True

    async def start_kernel(self, *, kernel_id=None, path=None, **kwargs):
        if kernel_id is None:  # a new kernel, not a restart; no await when a slot is free
            if (kwargs.get("env") or {}).get("VOILA_PREHEAT") == "True":
                self._waiting += 1
                try:
                    await self._free_slot(None, after_viewers=True)
                finally:
                    self._waiting -= 1
            else:
                self._viewers += 1
                try:
                    free = await self._free_slot(self.viewer_wait)
                finally:
                    self._viewers -= 1
                if not free:
                    self.log.warning("Kernel limit (%s) reached: a viewer got the busy page",
                                     self.max_kernels)
                    busy = BUSY_MESSAGE.format(n=self.max_kernels)
                    raise web.HTTPError(503, busy, reason=busy)
        # no await between the free slot found above and this count: no other start can take it
        self._starting += 1
        try:
            return await super().start_kernel(kernel_id=kernel_id, path=path, **kwargs)
        finally:
            self._starting -= 1

    async def shutdown_all(self, *args, **kwargs):
        self._closing = True
        return await super().shutdown_all(*args, **kwargs)
