"""The kernel manager of ``workbench serve``: a viewer's kernel waits briefly for a free slot, then
gets the busy page; a preheated kernel waits for a free slot (after waiting viewers) while Voilà
sees an empty pool; a viewer gets a pooled kernel that finished preheating before one still
starting. No kernel process is started (the served cap is tests/dashboards/test_load.py's).
"""
from __future__ import annotations

import asyncio
import concurrent.futures

import pytest
from jupyter_server.services.kernels.kernelmanager import AsyncMappingKernelManager
from tornado import web

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


def _free_later(manager, kernel_id, delay):
    asyncio.get_running_loop().call_later(delay, manager.listed.remove, kernel_id)


def test_a_viewer_gets_the_slot_that_frees_while_it_waits():
    async def scenario():
        manager = _Capped(max_kernels=1, viewer_wait=5.0)
        manager.listed = ["running"]
        _free_later(manager, "running", 0.3)  # e.g. culled, or a start's count settling
        kernel_id = await asyncio.wait_for(manager.start_kernel(kernel_name="python3"), 5)
        return kernel_id, manager.listed, manager._viewers

    kernel_id, listed, viewers = _run(scenario)
    assert listed == [kernel_id] and viewers == 0


def test_a_viewer_gets_the_busy_page_once_its_wait_is_over():
    async def scenario():
        manager = _Capped(max_kernels=1, viewer_wait=0.3)
        manager.listed = ["running"]
        started = asyncio.get_running_loop().time()
        with pytest.raises(web.HTTPError) as refused:
            await manager.start_kernel(kernel_name="python3")
        return refused.value, asyncio.get_running_loop().time() - started, manager

    refused, waited, manager = _run(scenario)
    assert refused.status_code == 503 and "viewer slots" in refused.reason
    assert waited >= 0.3 and manager.listed == ["running"] and manager._viewers == 0


def test_a_waiting_viewer_gets_the_free_slot_before_a_preheated_kernel():
    async def scenario():
        manager = _Capped(max_kernels=1, viewer_wait=5.0)
        manager.listed = ["running"]
        pooled = asyncio.create_task(
            manager.start_kernel(kernel_name="python3", env={"VOILA_PREHEAT": "True"}))
        viewer = asyncio.create_task(manager.start_kernel(kernel_name="python3"))
        await asyncio.sleep(0.05)
        manager.listed.remove("running")
        viewer_id = await asyncio.wait_for(viewer, 5)
        await asyncio.sleep(0.3)
        assert not pooled.done()  # the viewer's kernel holds the only slot
        pooled.cancel()
        return viewer_id, manager.listed

    viewer_id, listed = _run(scenario)
    assert listed == [viewer_id]


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
