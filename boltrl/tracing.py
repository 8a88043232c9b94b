"""Runner-side tracing: every span an agent makes during a rollout ends up in the store, tagged with it.

One OpenTelemetry SDK `TracerProvider` per process (made the global provider when none is set, so
frameworks that emit OTel spans land here too). Its single processor, `_Router`, tags each span with
`boltrl.rollout_id`/`boltrl.attempt_id`, found in the rollout context variable, or, for spans started
where that variable is absent (a framework's own thread that propagates only the OTel context), from
the trace id of the rollout's root span `boltrl.rollout`. Spans that belong to no rollout are dropped.

Each runner owns a `Tracing` sink: a `BatchSpanProcessor` feeding `StoreExporter`, which converts
spans to `SpanCreate` and hands them, in end order, to the runner's store on the runner's event loop.
`await tracing.flush()` exports everything ended so far; the runner calls it before finishing an
attempt, so its rewards are in the store when the rollout becomes terminal. Export failures are
logged, never raised into the agent; under `BOLTRL_STRICT=1` (tests) `flush` re-raises them.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import json
import logging
import os
import threading
from collections.abc import Iterator, Mapping, Sequence
from contextvars import ContextVar
from dataclasses import dataclass
from typing import Any

from opentelemetry import context as otel_context
from opentelemetry import trace
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import ReadableSpan, SpanProcessor, TracerProvider
from opentelemetry.sdk.trace import Span as SdkSpan
from opentelemetry.sdk.trace.export import BatchSpanProcessor, SpanExporter, SpanExportResult
from opentelemetry.trace import StatusCode

from boltrl.errors import BoltrlError, ServerUnavailableError
from boltrl.store.base import Store
from boltrl.types import ATTEMPT_ID_ATTR, ROLLOUT_ID_ATTR, ROLLOUT_SPAN, SpanCreate, SpanEvent

log = logging.getLogger(__name__)

TRACER_NAME = "boltrl"


def strict() -> bool:
    """True under `BOLTRL_STRICT=1`: telemetry misuse raises instead of logging (tests set it)."""
    return os.environ.get("BOLTRL_STRICT", "") == "1"


@dataclass(frozen=True)
class RolloutContext:
    """The rollout an agent is running for; `boltrl.current_rollout()` returns it."""

    rollout_id: str
    attempt_id: str
    attempt_n: int = 1
    mode: str = "train"


_current: ContextVar[RolloutContext | None] = ContextVar("boltrl_rollout", default=None)


def current_rollout() -> RolloutContext | None:
    """The rollout running in this context (task or thread), or None outside a rollout."""
    return _current.get()


@contextlib.contextmanager
def rollout_scope(ctx: RolloutContext, span: trace.Span | None = None) -> Iterator[None]:
    """Make `ctx` (and `span`, as the current OTel span) current in this context until exit."""
    token = _current.set(ctx)
    otel_token = otel_context.attach(trace.set_span_in_context(span)) if span is not None else None
    try:
        yield
    finally:
        if otel_token is not None:
            otel_context.detach(otel_token)
        _current.reset(token)


# ---------------------------------------------------------------- the process-wide provider


class _Router(SpanProcessor):
    """Tags spans with their rollout and routes each ended span to the sink of its runner."""

    def __init__(self) -> None:
        self.sinks: dict[str, Tracing] = {}  # attempt id -> sink, while the rollout runs
        self.traces: dict[int, RolloutContext] = {}  # root span's trace id -> rollout
        self._span_sink: dict[int, Tracing] = {}  # span id -> sink, from start to end

    def on_start(self, span: SdkSpan, parent_context: otel_context.Context | None = None) -> None:
        ctx = _current.get()
        if ctx is None and span.context is not None:
            ctx = self.traces.get(span.context.trace_id)
        if ctx is None or span.context is None:
            return
        sink = self.sinks.get(ctx.attempt_id)
        if sink is None:
            return
        span.set_attribute(ROLLOUT_ID_ATTR, ctx.rollout_id)
        span.set_attribute(ATTEMPT_ID_ATTR, ctx.attempt_id)
        self._span_sink[span.context.span_id] = sink

    def on_end(self, span: ReadableSpan) -> None:
        if span.context is None:
            return
        sink = self._span_sink.pop(span.context.span_id, None)
        if sink is not None:
            sink.processor.on_end(span)

    def shutdown(self) -> None:
        return None

    def force_flush(self, timeout_millis: int = 30000) -> bool:
        return True


_lock = threading.Lock()
_provider: TracerProvider | None = None
_router = _Router()


def provider() -> TracerProvider:
    """The process's boltrl `TracerProvider`, created once and made global if no SDK one is set."""
    global _provider
    with _lock:
        if _provider is None:
            _provider = TracerProvider(resource=Resource.create({"service.name": "boltrl-runner"}))
            _provider.add_span_processor(_router)
            current = trace.get_tracer_provider()
            if isinstance(current, trace.ProxyTracerProvider):
                trace.set_tracer_provider(_provider)
            elif isinstance(current, TracerProvider):
                # The application configured its own SDK provider: listen to it as well, so spans of
                # frameworks that use the global provider still reach the store.
                current.add_span_processor(_router)
        return _provider


def tracer() -> trace.Tracer:
    return provider().get_tracer(TRACER_NAME)


def emit_span(name: str, attributes: Mapping[str, Any]) -> None:
    """Start and end a span `name` now, a child of the current span (rewards, events)."""
    span = tracer().start_span(name, attributes=otel_attributes(attributes))
    span.end()


def otel_attributes(attributes: Mapping[str, Any]) -> dict[str, Any]:
    """OTel accepts str/bool/int/float and flat lists of them; anything else is stored as JSON text."""
    out: dict[str, Any] = {}
    for k, v in attributes.items():
        if isinstance(v, str | bool | int | float):
            out[k] = v
        elif isinstance(v, list | tuple) and all(isinstance(x, str | bool | int | float) for x in v):
            out[k] = list(v)
        else:
            out[k] = json.dumps(v, default=str)
    return out


def traceparent(span: trace.Span) -> str:
    """The W3C `traceparent` of `span`, for a subprocess to continue the trace."""
    c = span.get_span_context()
    return f"00-{c.trace_id:032x}-{c.span_id:016x}-{int(c.trace_flags) & 0x01:02x}"  # sampled bit only


# ---------------------------------------------------------------- export to the store


def to_span_create(span: ReadableSpan) -> SpanCreate | None:
    """Convert an SDK span to the store's shape; None for a span without a rollout."""
    attrs = dict(span.attributes or {})
    rollout_id = attrs.get(ROLLOUT_ID_ATTR)
    if not rollout_id or span.context is None:
        return None
    attrs = _plain(attrs)
    status = {StatusCode.OK: "ok", StatusCode.ERROR: "error"}.get(span.status.status_code, "unset")
    if span.status.description:
        attrs["otel.status_description"] = span.status.description
    start = (span.start_time or 0) / 1e9
    return SpanCreate(
        rollout_id=str(rollout_id),
        attempt_id=str(attrs[ATTEMPT_ID_ATTR]) if attrs.get(ATTEMPT_ID_ATTR) else None,
        trace_id=f"{span.context.trace_id:032x}",
        span_id=f"{span.context.span_id:016x}",
        parent_id=f"{span.parent.span_id:016x}" if span.parent is not None else None,
        name=span.name,
        start=start,
        end=span.end_time / 1e9 if span.end_time else start,
        attributes=attrs,
        events=[
            SpanEvent(
                name=e.name,
                time=e.timestamp / 1e9,
                attributes={
                    k: list(v) if isinstance(v, tuple) else v for k, v in (e.attributes or {}).items()
                },
            )
            for e in span.events
        ],
        status=status,
    )


def _plain(attributes: Mapping[str, Any] | None) -> dict[str, Any]:
    """OTel keeps sequences as tuples; JSON wants lists."""
    return {k: list(v) if isinstance(v, tuple) else v for k, v in (attributes or {}).items()}


class StoreExporter(SpanExporter):
    """Hands span batches to `store.add_spans` on `loop`, from the batch processor's thread.

    A batch keeps the order its spans ended in, so the store's `seq` follows it. While the server is
    away the store client raises `ServerUnavailableError` after its own retries; the exporter tries
    again until `retry_for_s` is spent, then drops the batch with an error in the log.
    """

    retry_delay_s = 1.0
    call_timeout_s = 180.0  # longer than a store client's own retries (60 s by default)

    def __init__(self, store: Store, loop: asyncio.AbstractEventLoop, *, retry_for_s: float = 300.0) -> None:
        self.store = store
        self.loop = loop
        self.retry_for_s = retry_for_s
        self.errors: list[BaseException] = []
        self._closed = threading.Event()

    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        batch = [s for s in (self._convert(span) for span in spans) if s is not None]
        if not batch:
            return SpanExportResult.SUCCESS
        try:
            self._add(batch)
        except BaseException as e:
            if isinstance(e, BoltrlError) and not isinstance(e, ServerUnavailableError) and len(batch) > 1:
                return self._export_by_rollout(batch)
            log.error("could not store %d span(s): %s", len(batch), e)
            self.errors.append(e)
            return SpanExportResult.FAILURE
        return SpanExportResult.SUCCESS

    def _export_by_rollout(self, batch: list[SpanCreate]) -> SpanExportResult:
        """One rollout's bad span (e.g. a rollout deleted meanwhile) must not lose the others'."""
        result = SpanExportResult.SUCCESS
        by_rollout: dict[str, list[SpanCreate]] = {}
        for s in batch:
            by_rollout.setdefault(s.rollout_id, []).append(s)
        for rollout_id, spans in by_rollout.items():
            try:
                self._add(spans)
            except BaseException as e:
                log.error("could not store %d span(s) of rollout %s: %s", len(spans), rollout_id, e)
                self.errors.append(e)
                result = SpanExportResult.FAILURE
        return result

    def _convert(self, span: ReadableSpan) -> SpanCreate | None:
        try:
            return to_span_create(span)
        except Exception as e:  # a span we cannot represent must not stop the others
            log.error("could not convert span %r: %s", span.name, e)
            self.errors.append(e)
            return None

    def _add(self, batch: list[SpanCreate]) -> None:
        if self.loop.is_closed():
            raise RuntimeError("the runner's event loop is closed")
        if threading.get_ident() == getattr(self.loop, "_thread_id", None):
            raise RuntimeError("span export called on the event loop thread; use `await Tracing.flush()`")
        deadline = self.loop.time() + self.retry_for_s
        while True:
            future = asyncio.run_coroutine_threadsafe(self.store.add_spans(batch), self.loop)
            try:
                # Bounded: a loop that stopped without closing would never answer.
                future.result(timeout=self.call_timeout_s)
                return
            except concurrent.futures.TimeoutError:
                future.cancel()
                raise ServerUnavailableError(f"storing spans took over {self.call_timeout_s:g} s") from None
            except ServerUnavailableError as e:
                if self._closed.is_set() or self.loop.time() > deadline:
                    raise
                log.warning("server unavailable, will retry storing %d span(s): %s", len(batch), e)
                self._closed.wait(self.retry_delay_s)

    def shutdown(self) -> None:
        self._closed.set()

    def force_flush(self, timeout_millis: int = 30000) -> bool:
        return True


class Tracing:
    """One runner's span sink: what its rollouts emit is batched and stored through `store`."""

    def __init__(
        self,
        store: Store,
        loop: asyncio.AbstractEventLoop | None = None,
        *,
        schedule_delay_s: float = 0.5,
        retry_for_s: float = 300.0,
    ) -> None:
        provider()
        self.exporter = StoreExporter(store, loop or asyncio.get_running_loop(), retry_for_s=retry_for_s)
        self.processor = BatchSpanProcessor(
            self.exporter,
            max_queue_size=65536,
            schedule_delay_millis=schedule_delay_s * 1000,
            max_export_batch_size=512,
        )
        self._roots: dict[str, trace.Span] = {}

    def start_rollout(self, ctx: RolloutContext, attributes: Mapping[str, Any] | None = None) -> trace.Span:
        """Open the rollout's root span `boltrl.rollout`; spans of its trace belong to the rollout."""
        _router.sinks[ctx.attempt_id] = self
        attrs = {"boltrl.attempt_n": ctx.attempt_n, "boltrl.mode": ctx.mode, **(attributes or {})}
        with rollout_scope(ctx):
            root = tracer().start_span(ROLLOUT_SPAN, context=otel_context.Context(), attributes=attrs)
        _router.traces[root.get_span_context().trace_id] = ctx
        self._roots[ctx.attempt_id] = root
        return root

    def end_rollout(self, ctx: RolloutContext) -> None:
        """Forget the rollout: spans started for it from now on are dropped (its root is ended)."""
        root = self._roots.pop(ctx.attempt_id, None)
        if root is not None:
            if root.is_recording():
                root.end()
            _router.traces.pop(root.get_span_context().trace_id, None)
        _router.sinks.pop(ctx.attempt_id, None)

    async def flush(self, timeout_s: float = 60.0) -> bool:
        """Store every span ended so far; False if that took longer than `timeout_s`.

        Runs the export in a worker thread: the exporter needs this event loop to reach the store.
        """
        n_errors = len(self.exporter.errors)
        try:
            await asyncio.wait_for(asyncio.to_thread(self.processor.force_flush), timeout_s)
        except TimeoutError:
            log.warning("flushing spans took longer than %g s", timeout_s)
            return False
        if strict() and len(self.exporter.errors) > n_errors:
            raise self.exporter.errors[-1]
        return True

    async def shutdown(self) -> None:
        """Export what is left, stop the batch thread and detach from the provider."""
        for attempt_id in list(self._roots):
            _router.sinks.pop(attempt_id, None)
        await asyncio.to_thread(self.processor.shutdown)
        for attempt_id, sink in list(_router.sinks.items()):
            if sink is self:
                _router.sinks.pop(attempt_id, None)


__all__ = [
    "RolloutContext",
    "StoreExporter",
    "Tracing",
    "current_rollout",
    "emit_span",
    "provider",
    "rollout_scope",
    "strict",
    "to_span_create",
    "traceparent",
    "tracer",
]
