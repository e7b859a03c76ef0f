"""Background tasks owned by the app lifespan: started by name, cancelled with a grace period."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Coroutine
from typing import Any

logger = logging.getLogger(__name__)


class BackgroundTasks:
    """Named asyncio tasks whose failures are logged, never re-raised into the loop."""

    def __init__(self) -> None:
        self._tasks: dict[str, asyncio.Task[Any]] = {}
        self.last_errors: dict[str, str] = {}

    def start(self, name: str, coro: Coroutine[Any, Any, Any]) -> asyncio.Task[Any]:
        """Start ``coro`` as a task called ``name`` (a finished task of that name is replaced)."""
        existing = self._tasks.get(name)
        if existing is not None and not existing.done():
            coro.close()
            raise RuntimeError(f"Background task '{name}' is already running")
        task = asyncio.create_task(coro, name=name)
        self._tasks[name] = task
        task.add_done_callback(self._on_done)
        return task

    def get(self, name: str) -> asyncio.Task[Any] | None:
        """The task of that name, if any."""
        return self._tasks.get(name)

    def running(self, name: str) -> bool:
        """True when a task of that name is still running."""
        task = self._tasks.get(name)
        return task is not None and not task.done()

    def _on_done(self, task: asyncio.Task[Any]) -> None:
        if task.cancelled():
            return
        exc = task.exception()
        if exc is not None:
            self.last_errors[task.get_name()] = str(exc)
            logger.error("Background task %s failed: %s", task.get_name(), exc, exc_info=exc)

    async def cancel_all(self, grace_seconds: float = 5.0) -> None:
        """Give running tasks ``grace_seconds`` to finish, then cancel and await them."""
        pending = [t for t in self._tasks.values() if not t.done()]
        if pending:
            _done, still = await asyncio.wait(pending, timeout=grace_seconds)
            for task in still:
                task.cancel()
            await asyncio.gather(*still, return_exceptions=True)
        self._tasks.clear()
