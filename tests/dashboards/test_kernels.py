"""The kernel manager of ``workbench serve``: a preheated kernel waits for a free slot while Voilà
sees an empty pool, and a viewer gets a pooled kernel that finished preheating before one still
starting. No kernel process is started (the served cap is tests/dashboards/test_load.py's).
"""
from __future__ import annotations

import asyncio
import concurrent.futures

from jupyter_server.services.kernels.kernelmanager import AsyncMappingKernelManager

from workbench.dashboards import kernels


class _Starter(AsyncMappingKernelManager):
    """jupyter_server's start, reduced to listing the kernel. Starts no process."""

    async def start_kernel(self, *, kernel_id=None, path=None, **kwargs):
        kernel_id = kernel_id or self.new_kernel_id()
        self.listed.append(kernel_id)
        return kernel_id

    def list_kernel_ids(self):
        return list(self.listed)


class _Capped(kernels.CappedKernelManager, _Starter):
    def get_pool_size(self, notebook_name: str) -> int:  # as Voilà's factory subclass has one
        return 1


def _run(scenario):
    # its own thread: Playwright's sync API may hold this thread's event loop (browser tests)
    with concurrent.futures.ThreadPoolExecutor(1) as pool:
        return pool.submit(asyncio.run, scenario()).result()


def test_a_preheated_kernel_waits_for_a_slot_and_voila_sees_an_empty_pool_meanwhile():
    async def scenario():
        manager = _Capped(max_kernels=1)
        manager.listed = ["running"]
        pooled = asyncio.create_task(
            manager.start_kernel(kernel_name="python3", env={"VOILA_PREHEAT": "True"}))
        await asyncio.sleep(0.1)
        assert not pooled.done() and manager._waiting == 1
        assert manager.get_pool_size("experiment.ipynb") == 0  # viewers get the busy page
        manager.listed.remove("running")  # the running kernel was culled
        kernel_id = await asyncio.wait_for(pooled, 5)
        return kernel_id, manager.listed, manager._waiting, manager.get_pool_size("experiment.ipynb")

    kernel_id, listed, waiting, pool_size = _run(scenario)
    assert listed == [kernel_id] and waiting == 0 and pool_size == 1


def test_a_viewer_gets_a_kernel_that_finished_preheating_first():
    class Pooled(kernels.CappedKernelManager):  # as Voilà's factory subclasses it
        async def get_rendered_notebook(self, notebook_name, **kwargs):
            return await self._pools[notebook_name].pop(0)

    async def scenario():
        loop = asyncio.get_running_loop()
        starting, ready = loop.create_future(), loop.create_future()
        ready.set_result("ready kernel")
        manager = Pooled()
        manager._pools = {"experiment.ipynb": [starting, ready]}
        got = await manager.get_rendered_notebook("experiment.ipynb")
        assert manager._pools["experiment.ipynb"] == [starting]
        starting.cancel()
        return got

    assert _run(scenario) == "ready kernel"
