"""Start-up retries: a dependency that is still booting gets a few tries with back-off;
one that stays down fails the process with a message naming it."""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from typing import TypeVar

from tenacity import (
    AsyncRetrying,
    RetryError,
    retry_if_exception_type,
    stop_after_attempt,
    wait_exponential,
)

from loraforge.runtime.errors import Unavailable

T = TypeVar("T")
log = logging.getLogger(__name__)


async def retry_startup(
    connect: Callable[[], Awaitable[T]], *, what: str, attempts: int = 5, backoff_s: float = 0.5
) -> T:
    """Call `connect` until it succeeds; raise Unavailable naming `what` after `attempts`."""
    try:
        async for attempt in AsyncRetrying(
            stop=stop_after_attempt(attempts),
            wait=wait_exponential(multiplier=backoff_s, max=10),
            retry=retry_if_exception_type(Unavailable),
            before_sleep=lambda rs: log.warning(
                "%s not reachable yet (attempt %d/%d): %s",
                what,
                rs.attempt_number,
                attempts,
                rs.outcome.exception() if rs.outcome else "",
            ),
            reraise=False,
        ):
            with attempt:
                return await connect()
    except RetryError as exc:
        last = exc.last_attempt.exception()
        raise Unavailable(f"gave up after {attempts} attempts: {last}") from last
    raise AssertionError("unreachable")  # pragma: no cover
