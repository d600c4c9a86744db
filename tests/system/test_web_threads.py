"""WEB_THREADS sets the web process's thread limiter for sync work (anyio's default is 40)."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import anyio
import anyio.to_thread

from app.config import get_settings
from app.main import create_app


def test_the_lifespan_sets_the_thread_limit() -> None:
    settings = get_settings().model_copy(update={"web_threads": 3})
    app = create_app(settings)

    async def inside() -> int:
        async with app.router.lifespan_context(app):  # what uvicorn enters at start-up
            return int(anyio.to_thread.current_default_thread_limiter().total_tokens)

    # A thread of its own: the browser tests' Playwright keeps an event loop on the main thread.
    with ThreadPoolExecutor(1) as pool:
        assert pool.submit(anyio.run, inside).result() == 3
