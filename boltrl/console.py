"""Terminal views of a store for operators (`boltrl status`, `boltrl rollouts`): rich tables, or JSON.

Every view reads through the `Store` protocol, so it works the same on a server (`StoreClient`) and on
a local SQLite file.
"""

from __future__ import annotations

import json
import time
from datetime import datetime
from typing import Any

from rich.console import Console
from rich.table import Table
from rich.text import Text

from boltrl.store.base import Store
from boltrl.types import MODEL_CALL_SPAN, REWARD_SPAN, ModelCall, Reward, Rollout, Span

STATUS_STYLE = {
    "queued": "cyan",
    "running": "yellow",
    "succeeded": "green",
    "failed": "red",
    "cancelled": "magenta",
    "timed_out": "red",
    "lost": "red",
}
TEXT_LIMIT = 300
"""Characters of a message shown before it is cut (`--full` shows all)."""


def _status(status: str) -> Text:
    return Text(status, style=STATUS_STYLE.get(status, ""))


def _time(t: float | None) -> str:
    return datetime.fromtimestamp(t).strftime("%Y-%m-%d %H:%M:%S") if t else "-"


def _duration(start: float | None, end: float | None) -> str:
    if start is None:
        return "-"
    seconds = (end or time.time()) - start
    return f"{seconds:.1f} s" if seconds < 120 else f"{seconds / 60:.1f} min"


def _ago(t: float) -> str:
    return f"{max(time.time() - t, 0):.0f} s ago"


def _print_json(console: Console, value: Any) -> None:
    # Not rich's print_json: it wraps long lines at the terminal width, which breaks the JSON.
    print(json.dumps(value, indent=2), file=console.file)


async def status(store: Store, console: Console, *, window_s: float = 60.0, as_json: bool = False) -> None:
    """Queue, running attempts, workers, throughput over the last `window_s`, and training runs."""
    counts = await store.count_rollouts()
    done = await store.count_finished(time.time() - window_s)
    workers = await store.list_workers()
    runs = await store.list_runs()
    now = time.time()
    active = [w for w in workers if w.is_active(now)]
    finished = sum(done.values())
    if as_json:
        _print_json(
            console,
            {
                "rollouts": counts,
                "queue_depth": counts["queued"],
                "running_attempts": sum(w.running for w in workers),
                "workers_active": len(active),
                "workers": [w.model_dump() for w in workers],
                "finished": {"window_s": window_s, "rollouts": done, "per_minute": finished * 60 / window_s},
                "runs": [r.model_dump() for r in runs[:5]],
            },
        )
        return
    line = Text("rollouts  ")
    for s, n in counts.items():
        line.append(f"{s} ", style=STATUS_STYLE[s]).append(f"{n}   ")
    console.print(line)
    console.print(
        f"queue depth {counts['queued']}   running attempts {sum(w.running for w in workers)}   "
        f"workers active {len(active)} of {len(workers)}"
    )
    console.print(
        f"throughput  {finished} finished in the last {window_s:g} s ({finished * 60 / window_s:.1f}/min): "
        + ", ".join(f"{n} {s}" for s, n in done.items())
    )
    if workers:
        table = Table("worker", "running", "succeeded", "failed", "timed out", "lost", "last heartbeat")
        for w in workers[:20]:
            table.add_row(
                w.id,
                str(w.running),
                str(w.succeeded),
                str(w.failed),
                str(w.timed_out),
                str(w.lost),
                _ago(w.last_heartbeat),
            )
        console.print(table)
    for run in runs[:3]:
        values = ", ".join(
            f"{k} {v:.4g}" for k, v in run.last.items() if k != "step" and isinstance(v, int | float)
        )
        console.print(f"run {run.id}: step {run.last_step} ({_ago(run.updated_at)})  {values}")


async def rollouts(
    store: Store,
    console: Console,
    *,
    status: str | None = None,
    group_id: str | None = None,
    mode: str | None = None,
    limit: int = 20,
    order: str = "desc",
    as_json: bool = False,
) -> None:
    """A table of rollouts, newest first unless `order="asc"`."""
    page = await store.list_rollouts(status=status, group_id=group_id, mode=mode, limit=limit, order=order)
    if as_json:
        _print_json(
            console, {"rollouts": [r.model_dump() for r in page.rollouts], "next_cursor": page.next_cursor}
        )
        return
    table = Table("id", "status", "mode", "group", "attempts", "created", "duration")
    for r in page.rollouts:
        table.add_row(
            r.id,
            _status(r.status),
            r.mode,
            r.group_id or "-",
            f"{r.attempt_count}/{r.max_attempts}",
            _time(r.created_at),
            _duration(r.started_at, r.ended_at),
        )
    console.print(table)
    if page.next_cursor is not None:
        console.print(f"(first {limit} shown: use --limit for more)")


async def show_rollout(
    store: Store, console: Console, rollout_id: str, *, full: bool = False, as_json: bool = False
) -> None:
    """One rollout: its fields, attempts, spans, model calls (messages and answer) and rewards."""
    rollout = await store.get_rollout(rollout_id)
    attempts = await store.list_attempts(rollout_id)
    spans = await store.get_spans(rollout_id)
    if as_json:
        _print_json(
            console,
            {
                "rollout": rollout.model_dump(),
                "attempts": [a.model_dump() for a in attempts],
                "spans": [s.model_dump() for s in spans],
            },
        )
        return
    _print_rollout(console, rollout, spans)
    table = Table("n", "id", "worker", "status", "started", "duration", "error", title="attempts")
    for a in attempts:
        table.add_row(
            str(a.n),
            a.id,
            a.worker_id,
            _status(a.status),
            _time(a.started_at),
            _duration(a.started_at, a.ended_at),
            a.error or "",
        )
    console.print(table)
    attempt_n = {a.id: a.n for a in attempts}
    table = Table("seq", "attempt", "name", "start (s)", "duration (ms)", "status", title="spans")
    t0 = min((s.start for s in spans), default=0.0)
    for s in spans:
        duration = f"{(s.end - s.start) * 1000:.0f}" if s.end is not None else "-"
        attempt = str(attempt_n.get(s.attempt_id or "", "-"))
        table.add_row(str(s.seq), attempt, s.name, f"{s.start - t0:.3f}", duration, s.status)
    console.print(table)
    calls = [s for s in spans if s.name == MODEL_CALL_SPAN]
    for i, span in enumerate(calls, 1):
        _print_call(console, i, span, full)


def _print_rollout(console: Console, rollout: Rollout, spans: list[Span]) -> None:
    rewards = [Reward.from_span(s) for s in spans if s.name == REWARD_SPAN]
    head = Text(f"rollout {rollout.id}  ", style="bold").append_text(_status(rollout.status))
    console.print(head)
    console.print(
        f"mode {rollout.mode}   group {rollout.group_id or '-'}   attempts {rollout.attempt_count}/"
        f"{rollout.max_attempts}   resources v{rollout.resources_version or '-'}   "
        f"created {_time(rollout.created_at)}   duration {_duration(rollout.started_at, rollout.ended_at)}"
    )
    console.print(f"input {_cut(json.dumps(rollout.input), TEXT_LIMIT)}")
    if rewards:
        console.print(
            "reward " + ", ".join(f"{r.value:g}" + (f" ({r.name})" if r.name else "") for r in rewards)
        )


def _print_call(console: Console, i: int, span: Span, full: bool) -> None:
    call = ModelCall.model_validate(span.attributes)
    limit = None if full else TEXT_LIMIT
    console.print(
        Text(f"model call {i}", style="bold")
        + Text(
            f"  (span {span.seq}) model {call.model or '-'}  agent {call.agent or '-'}  "
            f"weights v{call.weights_version if call.weights_version is not None else '-'}  "
            f"prompt {len(call.prompt_ids)} tok  completion {len(call.response_ids)} tok  "
            f"{call.latency_ms:.0f} ms  finish {call.finish_reason or '-'}"
        )
    )
    for message in call.request.get("messages") or []:
        console.print(_message(message, limit))
    if "prompt" in call.request:
        console.print(Text("  prompt: ", style="cyan") + Text(_cut(str(call.request["prompt"]), limit)))
    for choice in call.response.get("choices") or []:
        message = choice.get("message") or {"role": "assistant", "content": choice.get("text")}
        console.print(_message(message, limit, answer=True))
    if call.error:
        console.print(Text(f"  error: {call.error}", style="red"))


def _message(message: dict[str, Any], limit: int | None, answer: bool = False) -> Text:
    role = str(message.get("role", "?"))
    content = message.get("content")
    if isinstance(content, list):  # content parts
        content = " ".join(str(p.get("text", p)) if isinstance(p, dict) else str(p) for p in content)
    text = Text(f"  {'→ ' if answer else ''}{role}: ", style="green" if answer else "cyan")
    text.append(_cut(str(content or ""), limit))
    for call in message.get("tool_calls") or []:
        fn = call.get("function") or {}
        text.append(
            f"\n    tool call {fn.get('name')}({_cut(str(fn.get('arguments', '')), limit)})", style="yellow"
        )
    return text


def _cut(text: str, limit: int | None) -> str:
    if limit is None or len(text) <= limit:
        return text
    return text[:limit] + f"… ({len(text) - limit} more characters)"
