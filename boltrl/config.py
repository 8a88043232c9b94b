"""One dataclass per component. Every field has a laptop default and a one-line docstring.

Environment variables are read only at the edge (the CLI), through `from_env`, with the single prefix
`BOLTRL_` and the upper-cased field name (`BOLTRL_PORT=4800`). A bad value names the key and the value.
"""

from __future__ import annotations

import dataclasses
import os
import types
import typing
from dataclasses import dataclass, field
from typing import Any, TypeVar

from boltrl.errors import InvalidInputError

DEFAULT_PORT = 4747
DEFAULT_SERVER = f"http://127.0.0.1:{DEFAULT_PORT}"

C = TypeVar("C")


@dataclass
class ServerConfig:
    host: str = "127.0.0.1"
    """Interface to bind; loopback unless you mean to expose the server."""
    port: int = DEFAULT_PORT
    """TCP port to listen on."""
    db: str = "boltrl.db"
    """Store location: a SQLite file path, `sqlite:///PATH`, `postgresql://...`, or `memory`."""
    token: str | None = None
    """Bearer token required on every route but /healthz; None disables auth."""
    heartbeat_timeout_s: float = 30.0
    """An attempt with no heartbeat for this long is marked lost and its rollout requeued."""
    reap_interval_s: float = 1.0
    """How often the server looks for lost and timed-out attempts."""
    max_body_bytes: int = 32 * 1024 * 1024
    """Largest request body accepted; bigger bodies get 413."""
    public_url: str | None = None
    """URL runners and agents use to reach this server (default http://HOST:PORT)."""
    model: str | None = None
    """Model the gateway serves: a registry name (smollm2-135m, tiny-random), a local path or hub id.
    None: no gateway (the server only stores)."""
    backend: str = "hf"
    """Inference backend for `model`: hf (in-process transformers), vllm, or openai (any endpoint)."""
    upstream: str | None = None
    """Base URL (ending in /v1) of the vllm or openai upstream; vllm without it launches one."""
    upstream_api_key: str | None = None
    """API key for the upstream, if it needs one."""
    device: str = "cpu"
    """Device of the hf backend (cpu, cuda, cuda:1, mps)."""
    max_batch_size: int = 16
    """Most requests the hf backend decodes together."""

    def url(self) -> str:
        if self.public_url:
            return self.public_url.rstrip("/")
        host = "127.0.0.1" if self.host in ("0.0.0.0", "::", "") else self.host
        return f"http://{host}:{self.port}"


@dataclass
class ClientConfig:
    server: str = DEFAULT_SERVER
    """Base URL of the boltrl server."""
    token: str | None = None
    """Bearer token, if the server has one."""
    timeout_s: float = 30.0
    """Timeout of one HTTP request (long polls add their own wait to it)."""
    retry_for_s: float = 60.0
    """How long to keep retrying while the server is unreachable or restarting, then give up."""


@dataclass
class RunnerConfig:
    server: str = DEFAULT_SERVER
    """Base URL of the boltrl server to claim rollouts from."""
    token: str | None = None
    """Bearer token, if the server has one."""
    agent: str = ""
    """The agent as `module:function` (a `@boltrl.rollout` function) ..."""
    command: str | None = None
    """... or a command line run once per rollout (a command agent, any language)."""
    n: int = 1
    """Rollouts run concurrently by this runner process."""
    worker_id: str | None = None
    """Name of this worker in attempts (default: host-pid)."""
    poll_interval_s: float = 0.5
    """Wait between claims when the queue is empty."""
    heartbeat_interval_s: float = 5.0
    """How often a running attempt heartbeats."""
    shutdown_grace_s: float = 10.0
    """On SIGTERM, how long in-flight rollouts may run on before they are released."""
    max_rollouts: int | None = None
    """Stop after this many rollouts (None: run until stopped)."""
    ray_address: str | None = None
    """Run the `n` slots as Ray actors on this cluster: a head's HOST:PORT (or ray://HOST:PORT), or
    `auto`; None: in this process."""
    ray_actors: int = 0
    """Ray actors the slots are spread over (0: one per 8 slots)."""
    ray_num_cpus: float = 0.05
    """CPUs each Ray actor reserves; small, so dozens of actors fit on a small head."""
    extra: dict[str, Any] = field(default_factory=dict)
    """Free-form settings passed to hooks."""


def from_env(cls: type[C], env: typing.Mapping[str, str] | None = None, **overrides: Any) -> C:
    """Build config `cls` from `BOLTRL_<FIELD>` variables, then `overrides` (those not None)."""
    env = os.environ if env is None else env
    hints = typing.get_type_hints(cls)
    values: dict[str, Any] = {}
    for f in dataclasses.fields(cls):  # type: ignore[arg-type]
        key = f"BOLTRL_{f.name.upper()}"
        if key in env:
            values[f.name] = _coerce(key, env[key], hints[f.name])
    values.update({k: v for k, v in overrides.items() if v is not None})
    return cls(**values)


def _coerce(key: str, raw: str, hint: Any) -> Any:
    args = typing.get_args(hint)
    if typing.get_origin(hint) in (typing.Union, types.UnionType):
        if raw == "" and type(None) in args:
            return None
        hint = next(a for a in args if a is not type(None))
    try:
        if hint is bool:
            if raw.lower() not in ("1", "0", "true", "false", "yes", "no"):
                raise ValueError(raw)
            return raw.lower() in ("1", "true", "yes")
        if hint in (int, float, str):
            return hint(raw)
    except ValueError:
        raise InvalidInputError(f"{key}={raw!r} is not a valid {hint.__name__}") from None
    raise InvalidInputError(f"{key} cannot be set from the environment")


@dataclass
class TrainerConfig:
    model: str = "smollm2-135m"
    """Policy to train: a registry name (smollm2-135m, tiny-random), a local checkpoint or a hub id."""
    n_runners: int = 4
    """Rollouts run concurrently by the trainer's own runner (0: runners run elsewhere)."""
    runners: str = "local"
    """Where those `n_runners` slots run: local (this process), or Ray actors: ray://HOST:PORT (a Ray
    head), or ray (RAY_ADDRESS, else the latest `ray start` on this host, else a new local Ray)."""
    batch_size: int = 8
    """Tasks per step; each gets `group_size` rollouts (one group)."""
    max_steps: int = 50
    """Policy updates to make."""
    output_dir: str = "runs/boltrl"
    """Store, metrics.jsonl, curves.png and checkpoints go here; an existing run resumes."""
    server: str | None = None
    """Attach to this boltrl server (whose gateway serves the policy) instead of starting one."""
    token: str | None = None
    """Bearer token of the server (given or started)."""
    host: str = "127.0.0.1"
    """Interface the started server binds (use 0.0.0.0 for runners on other hosts)."""
    port: int = 0
    """Port of the started server (0: a free one)."""
    val_every: int = 5
    """Validate every this many steps (and before the first and after the last); 0: never."""
    val_size: int | None = None
    """Validation tasks per validation (None: all of val_data)."""
    temperature: float = 1.0
    """Sampling temperature of training rollouts (validation is greedy)."""
    max_tokens: int = 256
    """Most tokens a model call may generate."""
    rollout_timeout_s: float = 300.0
    """One rollout's time limit (the runner cancels it after this)."""
    step_timeout_s: float = 900.0
    """How long a step waits for its rollouts; stragglers are cancelled and reported."""
    max_attempts: int = 2
    """Attempts per rollout before it is failed."""
    async_rollouts: bool = False
    """Generate the next batch while training on this one (one step of staleness)."""
    max_staleness: int = 1
    """Async mode: drop calls made with weights older than this many versions."""
    device: str = "cpu"
    """Device for the policy and the in-process backend."""
    lora_r: int = 0
    """LoRA rank (0: full fine-tune)."""
    gradient_checkpointing: bool = False
    """Trade compute for memory in the update."""
    save_every: int = 10
    """Checkpoint every this many steps (and at the end); 0: only at the end."""
    resume: bool = True
    """Continue from the latest checkpoint in output_dir if there is one."""
    seed: int = 0
    """Seed of task sampling and torch."""
    tensorboard: bool = False
    """Also write TensorBoard event files (needs the tensorboard package)."""
    max_batch_size: int = 16
    """Most requests the in-process backend decodes together."""
