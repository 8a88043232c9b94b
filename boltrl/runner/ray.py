"""`RayRunners`: boltrl runners as Ray actors on an existing Ray cluster (`boltrl runner --ray-address`).

Each actor is one `Runner` with a share of the `config.n` slots, on the actor's own event loop,
claiming from `config.server` over HTTP like any other runner, so the server needs no Ray and the
actors need no torch. An actor that dies (killed, its node lost) loses only its in-flight attempts:
they stop heartbeating and the server marks them lost and requeues them. Nothing is restarted: the
owner sees the death in `exits()`. Actors reserve a small `num_cpus` so that dozens fit a small head;
the agent's real CPU use is not Ray's business (the runner's slots are concurrency, not cores).

Ray stays optional (`pip install 'boltrl[scale]'`). An address on loopback (`127.0.0.1:PORT`) sets
`RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER=0` before Ray is imported; otherwise Ray rewrites 127.0.0.1 to the
host's network address, where a loopback-only head does not listen (see docs/runner.md).
"""

from __future__ import annotations

import dataclasses
import ipaddress
import logging
import math
import os
import signal
import sys
import time
from collections.abc import Callable
from types import FrameType, TracebackType
from typing import Any

from boltrl.agent import RolloutAgent, as_agent
from boltrl.config import RunnerConfig
from boltrl.errors import BoltrlError, InvalidInputError, MissingDependencyError, ServerUnavailableError
from boltrl.runner.runner import Runner, load_agent

log = logging.getLogger(__name__)

LOOPBACK_ENV = "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER"
AUTH_MODE_ENV, AUTH_TOKEN_PATH_ENV, AUTH_TOKEN_ENV = "RAY_AUTH_MODE", "RAY_AUTH_TOKEN_PATH", "RAY_AUTH_TOKEN"
SLOTS_PER_ACTOR = 8
"""Default slots per actor when `ray_actors` is 0: `-n 64` runs as 8 actors of 8 slots."""
STOP_EXTRA_S = 10.0
"""After an actor's own grace, how long its final flush and finish may take before it is killed."""


def ray_address(spec: str | None) -> str | None:
    """The address to give `ray.init` for `--ray-address` / `runners=`: `ray://HOST:PORT` and `HOST:PORT`
    name a head's GCS address (what `ray start --head --port` opened); `ray`, `auto` or None: Ray's own
    default (RAY_ADDRESS, else the latest `ray start` on this host, else a new local instance)."""
    if spec is None or spec in ("", "ray", "auto"):
        return None
    address = spec.removeprefix("ray://")
    host, sep, port = address.rpartition(":")
    if not sep or not host or not port.isdigit():
        raise InvalidInputError(
            f"a Ray address is ray://HOST:PORT, HOST:PORT, ray or auto (or local: no Ray); got {spec!r}"
        )
    return address


def _is_loopback(address: str | None) -> bool:
    if address is None:
        return False
    host = address.rpartition(":")[0].strip("[]")
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def import_ray(address: str | None = None) -> Any:
    """`import ray`, or MissingDependencyError naming the extra.

    Before the import, like `ray start` does for a head: a token in RAY_AUTH_TOKEN_PATH or
    RAY_AUTH_TOKEN turns token auth on (Ray 2.60 clients send none without RAY_AUTH_MODE=token), and
    a loopback address turns on loopback mode.
    """
    if "ray" not in sys.modules:
        if os.environ.get(AUTH_TOKEN_PATH_ENV) or os.environ.get(AUTH_TOKEN_ENV):
            os.environ.setdefault(AUTH_MODE_ENV, "token")
        if _is_loopback(address):
            os.environ.setdefault(LOOPBACK_ENV, "0")
    try:
        import ray
    except ImportError:
        raise MissingDependencyError("ray", "scale") from None
    if _is_loopback(address):
        from ray._private import ray_constants

        if ray_constants.ENABLE_RAY_CLUSTER:
            raise InvalidInputError(
                f"Ray was imported before connecting to the loopback head {address}: set "
                f"{LOOPBACK_ENV}=0 in the environment (or use the head's network address)"
            )
    return ray


def split(total: int, parts: int) -> list[int]:
    """`total` as `parts` near-equal positive shares (fewer parts if `total` is smaller)."""
    parts = max(1, min(parts, total))
    return [total // parts + (i < total % parts) for i in range(parts)]


class RunnerActor:
    """The body of one Ray actor: a `Runner` with `config.n` slots. Its methods run on the actor's loop."""

    def __init__(
        self, config: RunnerConfig, agent: RolloutAgent | None = None, log_level: int = logging.INFO
    ) -> None:
        if not logging.getLogger().handlers:  # Ray sends the actor's stderr to the driver
            logging.basicConfig(level=log_level, format="%(levelname)s %(name)s: %(message)s")
            logging.getLogger("httpx").setLevel(logging.WARNING)
        self.config = config
        self.agent = agent
        self.error: str | None = None
        self.runner: Runner | None = None
        self._stop_requested = False
        self._stop_grace_s: float | None = None
        try:  # reported by ready(), not raised: a raising __init__ is only "actor died" to the owner
            if agent is None and config.agent:
                self.agent = load_agent(config.agent)
        except Exception as e:
            self.error = f"{type(e).__name__}: {e}"

    async def ready(self) -> str | None:
        """None once the agent is loaded, else why it could not be."""
        return self.error

    async def run(self) -> int:
        """Run until stopped or `max_rollouts`; the rollouts completed."""
        from boltrl.store.client import StoreClient

        if self.error is not None:
            raise InvalidInputError(self.error)
        async with StoreClient(self.config.server, token=self.config.token) as store:
            command = None if self.agent is not None else self.config.command
            self.runner = Runner(store, self.agent, command=command, config=self.config)
            if self._stop_requested:  # stop() came first (no await between here and there)
                self.runner.stop(self._stop_grace_s)
            await self.runner.run()
            return self.runner.completed

    async def stop(self, grace_s: float | None = None) -> None:
        self._stop_requested, self._stop_grace_s = True, grace_s
        if self.runner is not None:
            self.runner.stop(grace_s)


class RayRunners:
    """`config.n` slots as Ray actors on the cluster at `address`; `with RayRunners(...) as runners:`.

    `address` defaults to `config.ray_address`; `config.ray_actors` (0: one per 8 slots) and
    `config.ray_num_cpus` (reserved per actor) shape the spread. `agent` (a `@rollout` object) is
    shipped to the actors pickled, else they import `config.agent` (from the driver's working
    directory, which Ray puts on workers' sys.path, or from a `runtime_env` working_dir). The actors
    log at `log_level` (Ray streams their output to this process).
    """

    def __init__(
        self,
        config: RunnerConfig,
        address: str | None = None,
        *,
        agent: RolloutAgent | Any | None = None,
        runtime_env: dict[str, Any] | None = None,
        log_level: int = logging.INFO,
    ) -> None:
        if config.n < 1:
            raise InvalidInputError(f"RunnerConfig.n must be at least 1, got {config.n}")
        if agent is None and not config.agent and not config.command:
            raise InvalidInputError("RayRunners needs an agent, config.agent (module:function) or command")
        if config.ray_actors < 0 or config.ray_num_cpus < 0:
            raise InvalidInputError(
                f"ray_actors and ray_num_cpus must be >= 0, got {config.ray_actors}, {config.ray_num_cpus}"
            )
        self.config = config
        self.address = ray_address(address if address is not None else config.ray_address)
        self.n_actors = config.ray_actors or math.ceil(config.n / SLOTS_PER_ACTOR)
        self.agent = as_agent(agent) if agent is not None else None
        self.runtime_env = runtime_env
        self.log_level = log_level
        self.actors: list[Any] = []
        self.worker_ids: list[str | None] = []
        self._runs: list[Any] = []
        self.endings: dict[int, str] = {}
        self._owns_ray = False
        self._ray: Any = None

    def configs(self) -> list[RunnerConfig]:
        """One RunnerConfig per actor: its slots, its worker id, its share of `max_rollouts`."""
        c = self.config
        slots = split(c.n, self.n_actors)
        quotas: list[int | None] = [None] * len(slots)
        if c.max_rollouts is not None:
            slots = slots[: max(1, c.max_rollouts)]
            quotas = list(split(c.max_rollouts, len(slots))) if c.max_rollouts > 0 else [0]
        return [
            dataclasses.replace(
                c, n=n, max_rollouts=q, worker_id=f"{c.worker_id}-{i}" if c.worker_id else None
            )
            for i, (n, q) in enumerate(zip(slots, quotas, strict=True))
        ]

    def start(self) -> RayRunners:
        if self.actors:
            raise InvalidInputError("these RayRunners are already started")
        ray = self._ray = import_ray(self.address)
        if not ray.is_initialized():
            try:
                ray.init(address=self.address, logging_level=logging.WARNING)
            except ConnectionError as e:
                raise ServerUnavailableError(
                    f"could not connect to the Ray cluster at {self.address or 'auto'} ({e}): is its head "
                    f"running, and does this process have its token ({AUTH_MODE_ENV}=token and "
                    f"{AUTH_TOKEN_PATH_ENV})?"
                ) from None
            self._owns_ray = True
        cls = ray.remote(RunnerActor).options(
            num_cpus=self.config.ray_num_cpus, max_restarts=0, runtime_env=self.runtime_env
        )
        configs = self.configs()
        try:
            self.actors = [cls.remote(cfg, self.agent, self.log_level) for cfg in configs]
            self.worker_ids = [cfg.worker_id for cfg in configs]
            errors = ray.get([a.ready.remote() for a in self.actors])
            if any(errors):
                why = next(e for e in errors if e)
                raise InvalidInputError(f"the Ray runner actors could not load the agent: {why}")
        except BaseException:
            self._kill_all()
            if self._owns_ray:
                ray.shutdown()
                self._owns_ray = False
            raise
        self._runs = [a.run.remote() for a in self.actors]
        log.info("started %d Ray runner actor(s): %s slots", len(self.actors), [c.n for c in configs])
        return self

    def alive(self) -> int:
        """How many actors are still running their runner."""
        if not self._runs:
            return 0
        _, pending = self._ray.wait(self._runs, num_returns=len(self._runs), timeout=0)
        return len(pending)

    def exits(self) -> list[tuple[int, str]]:
        """(index, how it ended) of actors that ended since the last call; each is logged once."""
        if not self._runs:
            return []
        done, _ = self._ray.wait(self._runs, num_returns=len(self._runs), timeout=0)
        out = []
        for ref in done:
            i = self._runs.index(ref)
            if i in self.endings:
                continue
            try:
                how = f"stopped after {self._ray.get(ref)} rollout(s)"
                log.info("Ray runner actor %d %s", i, how)
            except Exception as e:
                first = (str(e).strip().splitlines() or [""])[0]
                how = f"died: {type(e).__name__}: {first}"
                log.warning("Ray runner actor %d %s (the server requeues its in-flight attempts)", i, how)
            self.endings[i] = how
            out.append((i, how))
        return out

    def wait(self, timeout_s: float | None = None, abort: Callable[[], bool] | None = None) -> bool:
        """Wait until every actor's runner has ended (True), or `timeout_s` passed or `abort()` (False)."""
        deadline = None if timeout_s is None else time.monotonic() + timeout_s
        while self.alive():
            if (deadline is not None and time.monotonic() >= deadline) or (abort and abort()):
                return False
            self.exits()
            time.sleep(0.1)
        self.exits()
        return True

    def stop(self, grace_s: float | None = None, abort: Callable[[], bool] | None = None) -> list[str]:
        """Stop every actor (in-flight rollouts get `grace_s`, then are released), kill the actors, and
        disconnect if this object connected. Returns how each actor ended, in actor order."""
        if not self._runs:
            return []
        grace = self.config.shutdown_grace_s if grace_s is None else grace_s
        for actor in self.actors:
            actor.stop.remote(grace)
        if not self.wait(grace + STOP_EXTRA_S, abort):
            log.warning("%d Ray runner actor(s) did not stop in time: killing them", self.alive())
        endings = [self.endings.get(i, "killed: did not stop in time") for i in range(len(self._runs))]
        self._kill_all()
        if self._owns_ray:
            self._ray.shutdown()
            self._owns_ray = False
        self._runs = []
        return endings

    def _kill_all(self) -> None:
        for actor in self.actors:
            try:
                self._ray.kill(actor, no_restart=True)
            except Exception as e:  # already gone
                log.debug("killing a Ray runner actor: %s", e)

    def __enter__(self) -> RayRunners:
        return self.start()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()


def run_ray_runners(config: RunnerConfig) -> None:
    """`boltrl runner --ray-address ADDR`: run until SIGTERM/SIGINT or every actor's `max_rollouts`."""
    if config.agent and config.command:
        raise InvalidInputError("give the runner --agent or --command, not both")
    if not logging.getLogger().handlers:
        logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    runners = RayRunners(config)
    runners.start()
    stops: list[int] = []

    def on_signal(signum: int, frame: FrameType | None) -> None:
        stops.append(signum)
        if len(stops) > 1:
            log.warning("second %s: killing the actors now", signal.Signals(signum).name)

    previous = {sig: signal.signal(sig, on_signal) for sig in (signal.SIGTERM, signal.SIGINT)}
    try:
        runners.wait(abort=lambda: bool(stops))
        if stops:
            log.info("stopping %d Ray runner actor(s) (grace %g s)", runners.alive(), config.shutdown_grace_s)
        endings = runners.stop(abort=lambda: len(stops) > 1)
    except BaseException:
        runners.stop(0, abort=lambda: True)
        raise
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    died = [e for e in endings if e.startswith("died")]
    if died:
        raise BoltrlError(f"{len(died)} of {len(endings)} Ray runner actor(s) died: {'; '.join(died)}")


__all__ = ["RayRunners", "RunnerActor", "import_ray", "ray_address", "run_ray_runners"]
