"""The kernel manager of ``workbench serve``: its cap, and which pooled kernel a viewer gets.

The cap counts each kernel once, also while it finishes starting.
jupyter_client lists a kernel (``list_kernel_ids``) as soon as it is up, while jupyter_server's
``start_kernel`` has not returned yet. A cap that added "kernels listed" and "kernels starting"
counted such a kernel twice and sent a viewer the busy page with a slot still free (seen in CI:
a first view ~0.1 s after the server opened its port, under a cap of 3 with two pools starting).
A viewer gets a pooled kernel that finished preheating before one still starting.
"""
from __future__ import annotations

import asyncio
import concurrent.futures

import pytest
from jupyter_server.services.kernels.kernelmanager import AsyncMappingKernelManager
from tornado import web

from workbench.dashboards import kernels


class _Starter(AsyncMappingKernelManager):
    """jupyter_server's start reduced to that window: the kernel is listed, then ``start_kernel``
    waits for ``finish`` before it returns. Starts no process."""

    async def start_kernel(self, *, kernel_id=None, path=None, **kwargs):
        self.listed.append(kernel_id)
        await self.finish
        return kernel_id

    def list_kernel_ids(self):
        return list(self.listed)


class _Capped(kernels.CappedKernelManager, _Starter):
    pass


def _run(scenario):
    # its own thread: Playwright's sync API may hold this thread's event loop (browser tests)
    with concurrent.futures.ThreadPoolExecutor(1) as pool:
        return pool.submit(asyncio.run, scenario()).result()


def test_a_kernel_listed_before_its_start_returns_is_counted_once():
    async def scenario():
        manager = _Capped(max_kernels=2)
        manager.listed, manager.finish = [], asyncio.get_running_loop().create_future()
        first = asyncio.create_task(manager.start_kernel(kernel_name="python3"))
        await asyncio.sleep(0)  # the first kernel is listed and still starting
        assert len(manager.listed) == 1 and manager.kernels_in_use() == 1
        second = asyncio.create_task(manager.start_kernel(kernel_name="python3"))
        await asyncio.sleep(0)
        assert manager.kernels_in_use() == 2
        with pytest.raises(web.HTTPError) as busy:  # the cap holds
            await manager.start_kernel(kernel_name="python3")
        assert busy.value.status_code == 503
        manager.finish.set_result(None)
        ids = await asyncio.gather(first, second)
        assert len(set(ids)) == 2 and sorted(ids) == sorted(manager.listed)
        assert manager.kernels_in_use() == 2
        return manager._starting

    assert _run(scenario) == set()


def test_a_preheated_kernel_waits_for_a_slot_and_voila_sees_an_empty_pool_meanwhile():
    async def scenario():
        manager = _Capped(max_kernels=1)
        manager.listed, manager.finish = ["running"], asyncio.get_running_loop().create_future()
        manager.finish.set_result(None)
        pooled = asyncio.create_task(
            manager.start_kernel(kernel_name="python3", env={"VOILA_PREHEAT": "True"}))
        await asyncio.sleep(0.1)
        assert not pooled.done() and manager._waiting == 1
        manager.listed.remove("running")  # the running kernel was culled
        kernel_id = await asyncio.wait_for(pooled, 5)
        return kernel_id, manager.listed, manager._waiting

    kernel_id, listed, waiting = _run(scenario)
    assert listed == [kernel_id] and waiting == 0


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
