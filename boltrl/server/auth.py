"""Per-attempt tokens: what an agent is given instead of the server's token.

With a token configured, the server's token opens every route; an agent must not hold it, because an
agent is code under training and its host may be anyone's. Each attempt therefore has a token of its
own, `boltrl-attempt/{rollout_id}/{attempt_id}/{mac}`, where `mac` is an HMAC-SHA256 of the two ids
keyed by the server's token. Anyone who holds the server's token (the server, the runner that claimed
the attempt) derives it without asking anyone; nobody else can forge one, and it reveals nothing of the
key. Because it depends only on the token and the ids, it survives a server restart and is the same on
every server process sharing a store.

An attempt token opens only what an agent needs, and only for its own attempt:

- the gateway under `/gw/{rollout_id}/{attempt_id}/` (the `llm.api_key` of the claim);
- `POST /v1/spans` (`boltrl reward`) with every span in its rollout and attempt;
- `POST /v1/traces` (OTLP) where spans of any other rollout or attempt are rejected.

Everything else answers 403. This module uses only the standard library, so a runner imports it cheaply.
"""

from __future__ import annotations

import hashlib
import hmac

from boltrl.errors import ForbiddenError

PREFIX = "boltrl-attempt/"
STATE_KEY = "boltrl_attempt"
"""Where the middleware leaves the `(rollout_id, attempt_id)` an attempt token grants, in the ASGI
scope's `state` (so `request.state.boltrl_attempt` in a route); absent for the server's own token."""

SPAN_PATHS = frozenset({"/v1/spans", "/v1/traces"})
GATEWAY_PREFIX = "/gw/"


def attempt_token(server_token: str, rollout_id: str, attempt_id: str) -> str:
    """The token that lets an agent use the gateway and write spans for this one attempt only."""
    return f"{PREFIX}{rollout_id}/{attempt_id}/{_mac(server_token.encode(), rollout_id, attempt_id)}"


def parse_attempt_token(key: bytes, presented: bytes) -> tuple[str, str] | None:
    """`(rollout_id, attempt_id)` when `presented` is an attempt token made with `key`, else None."""
    try:
        text = presented.decode("ascii")
    except UnicodeDecodeError:
        return None
    if not text.startswith(PREFIX):
        return None
    parts = text[len(PREFIX) :].split("/")
    if len(parts) != 3 or not parts[0] or not parts[1]:
        return None
    rollout_id, attempt_id, mac = parts
    if not hmac.compare_digest(mac, _mac(key, rollout_id, attempt_id)):
        return None
    return rollout_id, attempt_id


def allowed(method: str, path: str, scope: tuple[str, str]) -> bool:
    """Whether an attempt token for `scope` opens `method path` (its spans are checked by the routes)."""
    if method == "POST" and path in SPAN_PATHS:
        return True
    rollout_id, attempt_id = scope
    return path.startswith(f"{GATEWAY_PREFIX}{rollout_id}/{attempt_id}/")


def forbidden_message(scope: tuple[str, str]) -> str:
    rollout_id, attempt_id = scope
    return (
        f"this token belongs to attempt {attempt_id!r} of rollout {rollout_id!r}: it opens only that "
        "attempt's gateway and POST /v1/spans or /v1/traces with that attempt's spans"
    )


def check_spans(scope: tuple[str, str] | None, ids: set[tuple[str, str | None]]) -> None:
    """Raise `ForbiddenError` when an attempt token tries to write spans of another rollout or attempt."""
    if scope is None:
        return
    for rollout_id, attempt_id in ids:
        if (rollout_id, attempt_id) != scope:
            raise ForbiddenError(
                f"span of rollout {rollout_id!r}, attempt {attempt_id!r} refused: {forbidden_message(scope)}"
            )


def _mac(key: bytes, rollout_id: str, attempt_id: str) -> str:
    message = f"boltrl-attempt\0{rollout_id}\0{attempt_id}".encode()
    return hmac.new(key, message, hashlib.sha256).hexdigest()[:40]


__all__ = ["ForbiddenError", "attempt_token", "check_spans", "parse_attempt_token"]
