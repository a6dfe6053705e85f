"""Job kinds that exist only for the tests: flaky, permanent, forgetful, deferred, cancelling."""

from __future__ import annotations

import datetime as dt
from typing import Any

from dicomgate.errors import PermanentError, RetriableError
from dicomgate.jobs import ItemOutcome, JobContext, register

calls: dict[str, int] = {}
facade: dict[str, Any] = {}  # the Jobs a handler may use to act on its own job


@register("test_flaky")
def _flaky(ctx: JobContext) -> None:
    ctx.expect(["a"])
    calls[ctx.job_id] = calls.get(ctx.job_id, 0) + 1
    if calls[ctx.job_id] < int(ctx.params["succeed_on"]):
        raise RetriableError("peer busy")
    ctx.record("a", ItemOutcome.STORED)


@register("test_permanent")
def _permanent(ctx: JobContext) -> None:
    calls[ctx.job_id] = calls.get(ctx.job_id, 0) + 1
    raise PermanentError("no such peer")


@register("test_forgetful")
def _forgetful(ctx: JobContext) -> None:
    ctx.expect(["a", "b", "c"])
    ctx.record("a", ItemOutcome.STORED)
    ctx.record("b", ItemOutcome.SKIPPED, "not wanted")


@register("test_deferred")
def _deferred(ctx: JobContext) -> None:
    ctx.defer_until(dt.datetime.now(dt.UTC) + dt.timedelta(hours=1), "outside the PACS window")


@register("test_cancelling")
def _cancelling(ctx: JobContext) -> None:
    ctx.expect(["a", "b", "c", "d"])
    for key in ctx.pending():
        if ctx.cancelled():
            return
        ctx.record(key, ItemOutcome.STORED)
        if key == "b":
            facade["jobs"].cancel(ctx.job_id)
