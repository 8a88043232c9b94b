"""`Trainer(...).fit(agent, train_data, val_data)`: the LightningRL loop, end to end.

One step, synchronous mode:
1. enqueue `group_size` rollouts for each of `batch_size` tasks (one group per task);
2. wait for them, at most `step_timeout_s`; stragglers are cancelled and reported, not waited on;
3. read each succeeded rollout's spans (those of its succeeded attempt) and adapt them to transitions;
4. credit assignment and group advantages (`boltrl.algorithms`); groups with no signal are skipped;
5. one policy update (`ppo_epochs` passes) against the recorded behaviour logprobs;
6. publish the new weights to the gateway's backend under the next `weights_version`;
7. every `val_every` steps (and before the first and after the last), greedy rollouts on `val_data`.

Asynchronous mode (`async_rollouts=True`) enqueues step k+1's rollouts before training on step k's,
so agents keep running while the model trains; calls made with weights more than `max_staleness`
versions old are dropped, newer stale ones are corrected by the PPO ratio against their recorded
logprobs. The trainer hosts the server (SQLite in `output_dir`) and the in-process HF backend unless
`server=` attaches it to a running one, whose gateway then loads each new checkpoint from disk.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import functools
import json
import logging
import random
import re
import shutil
import threading
import time
import uuid
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    SpinnerColumn,
    TextColumn,
    TimeElapsedColumn,
)

from boltrl.adapters import AdaptedRollout, rewards, rollout_transitions
from boltrl.agent import RolloutAgent, as_agent
from boltrl.algorithms import LightningRL, policy_loss, rollout_return
from boltrl.config import RunnerConfig, ServerConfig, TrainerConfig
from boltrl.errors import ConflictError, InvalidInputError
from boltrl.store.base import Store
from boltrl.store.client import StoreClient
from boltrl.training.checkpoint import export_pretrained, latest_checkpoint, load_checkpoint, save_checkpoint
from boltrl.training.metrics import MetricsLog
from boltrl.training.policy import LoraConfig, Policy, PolicyConfig
from boltrl.training.update import policy_update
from boltrl.types import Rollout, RolloutCreate, Span

log = logging.getLogger(__name__)
CONCURRENT_READS = 16


@dataclasses.dataclass
class FitResult:
    history: list[dict[str, Any]]
    """One dict per step (and per validation), as written to metrics.jsonl."""
    output_dir: Path
    weights_version: int
    """Version of the weights the backend serves at the end."""
    checkpoint: Path | None
    """The last checkpoint written."""

    def last(self, key: str) -> Any:
        """The most recent value of a metric, or None."""
        return next((row[key] for row in reversed(self.history) if key in row), None)

    def first(self, key: str) -> Any:
        return next((row[key] for row in self.history if key in row), None)


class Trainer:
    """Train `model` on an agent's rollouts with `algorithm` (LightningRL). See the module docstring."""

    def __init__(
        self,
        model: str | None = None,
        algorithm: LightningRL | None = None,
        *,
        config: TrainerConfig | None = None,
        **options: Any,
    ) -> None:
        base = config or TrainerConfig()
        fields = {f.name for f in dataclasses.fields(TrainerConfig)}
        unknown = sorted(set(options) - fields)
        if unknown:
            raise InvalidInputError(f"unknown Trainer option(s) {unknown}; valid: {sorted(fields)}")
        if model is not None:
            options["model"] = model
        self.config = dataclasses.replace(base, **options)
        self.algorithm = algorithm or LightningRL()
        self.console = Console()

    # ------------------------------------------------------------------ the public entry point

    def fit(
        self,
        agent: RolloutAgent | Any | str,
        train_data: Iterable[Any] | str | Path,
        val_data: Iterable[Any] | str | Path | None = None,
    ) -> FitResult:
        """Train until `max_steps`; resumable: a second call on the same `output_dir` continues."""
        cfg = self.config
        train, val = load_tasks(train_data), load_tasks(val_data) if val_data is not None else []
        if not train:
            raise InvalidInputError("train_data is empty")
        out = Path(cfg.output_dir)
        out.mkdir(parents=True, exist_ok=True)
        import torch

        torch.manual_seed(cfg.seed)
        policy = Policy(self._policy_config())
        state: dict[str, Any] = {"step": 0, "version": 0}
        checkpoint = latest_checkpoint(out) if cfg.resume else None
        if checkpoint is not None:
            info = load_checkpoint(policy, checkpoint)
            state = {"step": int(info.trainer_state.get("step", 0)), "version": info.weights_version}
            self.console.log(f"resuming from {checkpoint} (step {state['step']})")
        with contextlib.ExitStack() as stack:
            url, publish = self._start_server(stack, policy, out)
            if state["version"]:
                publish(state["version"])
            self._start_runners(stack, agent, url)
            metrics = MetricsLog(out, tensorboard=cfg.tensorboard)
            stack.callback(metrics.close)
            loop = _Loop(self, policy, metrics, publish, train, val, state)
            last = asyncio.run(loop.run(url))
        return FitResult(metrics.history, out, state["version"], last)

    def fit_offline(self, records: str | Path, *, epochs: int = 1) -> FitResult:
        """Train from a `boltrl dump` of recorded rollouts, with no agents running (see offline.py)."""
        from boltrl.training.offline import fit_offline

        return fit_offline(self, records, epochs=epochs)

    # ------------------------------------------------------------------ set-up

    def _policy_config(self) -> PolicyConfig:
        cfg, algo = self.config, self.algorithm
        lora = LoraConfig(r=cfg.lora_r, alpha=2 * cfg.lora_r) if cfg.lora_r else None
        return PolicyConfig(
            model=cfg.model,
            device=cfg.device,
            lr=algo.lr,
            weight_decay=algo.weight_decay,
            max_grad_norm=algo.max_grad_norm,
            warmup_steps=algo.warmup_steps,
            micro_batch_tokens=algo.micro_batch_tokens,
            gradient_checkpointing=cfg.gradient_checkpointing,
            lora=lora,
            keep_reference=algo.kl_coef > 0,
            seed=cfg.seed,
        )

    def _start_server(self, stack: contextlib.ExitStack, policy: Policy, out: Path) -> tuple[str, Any]:
        """Start (or attach to) the server; return its URL and `publish(version)` for new weights."""
        cfg = self.config
        if cfg.server:
            url = cfg.server.rstrip("/")

            def publish_remote(version: int) -> None:
                path = export_pretrained(policy, out / "serving" / f"v{version:06d}")
                import httpx

                headers = {"Authorization": f"Bearer {cfg.token}"} if cfg.token else {}
                body = {"path": str(path.resolve()), "version": version}
                r = httpx.post(f"{url}/v1/admin/weights", json=body, headers=headers, timeout=600)
                r.raise_for_status()
                # the server has loaded `path`; older exports (a full model each) are never read again
                for old in path.parent.glob("v*"):
                    if old != path and old.is_dir():
                        shutil.rmtree(old, ignore_errors=True)

            return url, publish_remote

        from boltrl.inference.hf import HFBackend
        from boltrl.server.thread import serve_in_thread
        from boltrl.store.sqlite import SQLiteStore

        db = out / "boltrl.db"
        server_cfg = ServerConfig(db=str(db), token=cfg.token, host=cfg.host, port=cfg.port)
        self.console.log(f"loading {cfg.model} for the gateway")
        live = stack.enter_context(
            serve_in_thread(
                lambda: SQLiteStore(str(db)),
                server_cfg,
                backend=lambda: HFBackend(cfg.model, device=cfg.device, max_batch_size=cfg.max_batch_size),
                host=cfg.host,
                port=cfg.port or None,
            )
        )
        self.console.log(f"server on {live.url} (store {db})")

        def publish_local(version: int) -> None:
            policy.publish(live.backend, version)

        return live.url, publish_local

    def _start_runners(self, stack: contextlib.ExitStack, agent: Any, url: str) -> None:
        cfg = self.config
        if cfg.n_runners <= 0:
            self.console.log("no local runners: waiting for runners connected to the server")
            return
        if cfg.runners != "local":  # Ray actors on a cluster: "ray://HOST:PORT" or "ray"
            from boltrl.runner.ray import RayRunners

            named = isinstance(agent, str)
            config = RunnerConfig(
                server=url,
                token=cfg.token,
                agent=agent if named else "",
                n=cfg.n_runners,
                ray_address=cfg.runners,
            )
            quiet = logging.WARNING  # their per-rollout lines would drown the progress bar
            stack.enter_context(RayRunners(config, agent=None if named else agent, log_level=quiet))
            return
        if isinstance(agent, str):
            from boltrl.runner.pool import RunnerPool

            config = RunnerConfig(server=url, token=cfg.token, agent=agent, n=cfg.n_runners)
            stack.enter_context(RunnerPool(config, processes=1))
            return
        stack.enter_context(_runner_thread(as_agent(agent), url, cfg.token, cfg.n_runners))


async def winning_spans(store: Store, rollout: Rollout) -> list[Span]:
    """The spans of a succeeded rollout's succeeded attempt, the only ones training and validation
    read: a lost attempt's runner may still write calls and rewards after the rollout was requeued."""
    if rollout.status != "succeeded":
        return []
    ok = [a for a in await store.list_attempts(rollout.id) if a.status == "succeeded"]
    return await store.get_spans(rollout.id, attempt_id=ok[-1].id) if ok else []


class _Loop:
    """The steps of one `fit` call, on one event loop (the policy update runs in a worker thread)."""

    def __init__(
        self,
        trainer: Trainer,
        policy: Policy,
        metrics: MetricsLog,
        publish: Any,
        train: list[Any],
        val: list[Any],
        state: dict[str, Any],
    ) -> None:
        self.cfg, self.algo, self.console = trainer.config, trainer.algorithm, trainer.console
        self.policy, self.metrics, self.publish = policy, metrics, publish
        self.train, self.val, self.state = train, val, state
        self.run_id = uuid.uuid4().hex[:8]  # prefixes this fit call's rollout ids
        self.run_name = run_name(self.cfg.output_dir)  # the run's curves on the server, across resumes
        self._server_rows: dict[int, dict[str, Any]] = {}
        self.rng = random.Random(self.cfg.seed + state["step"])
        self.order: list[int] = []
        self.loss_fn = functools.partial(policy_loss, config=self.algo)

    async def run(self, url: str) -> Path | None:
        cfg = self.cfg
        async with StoreClient(url, cfg.token) as store:
            self.store: Store = store
            await self._cancel_leftovers()
            sampling = {"temperature": cfg.temperature, "max_tokens": cfg.max_tokens}
            template = "{server}/gw/{rollout_id}/{attempt_id}/v1"
            await store.put_resources(
                {"llm": {"base_url": template, "model": cfg.model, "sampling": sampling}}
            )
            start = self.state["step"]
            if start == 0 and self._val_due(0):
                await self._validate(0)
            pending = await self._enqueue_step(start) if start < cfg.max_steps else []
            last: Path | None = None
            with _progress(self.console) as progress:
                bar = progress.add_task("training", total=cfg.max_steps, completed=start)
                for step in range(start, cfg.max_steps):
                    pending, saved = await self._step(step, pending)
                    last = saved or last
                    reward = self.metrics.history[-1].get("rollout/reward_mean")
                    shown = "-" if reward is None else f"{reward:.3f}"
                    progress.update(bar, advance=1, description=f"training (reward {shown})")
            self.metrics.plot()
            return last

    async def _step(self, step: int, pending: list[str]) -> tuple[list[str], Path | None]:
        """Collect `pending`, enqueue the next step (async mode: before the update), update, log,
        validate and checkpoint when due. Returns the next step's rollout ids and any checkpoint."""
        cfg = self.cfg
        has_next = step + 1 < cfg.max_steps
        t0 = time.perf_counter()
        batch, row = await self._collect(pending, step)
        row["time/rollout_s"] = time.perf_counter() - t0
        following = await self._enqueue_step(step + 1) if cfg.async_rollouts and has_next else []
        row.update(await self._update(batch))
        if not cfg.async_rollouts and has_next:
            following = await self._enqueue_step(step + 1)
        row["time/step_s"] = time.perf_counter() - t0
        self.state["step"] = step + 1
        await self._log({"step": step + 1, "weights_version": self.state["version"], **row})
        self._report(step + 1, row)
        if self._val_due(step + 1):
            await self._validate(step + 1)
        saved = None
        if (cfg.save_every and (step + 1) % cfg.save_every == 0) or not has_next:
            saved = await asyncio.to_thread(self._save)
            self.metrics.plot()
        return following, saved

    # ------------------------------------------------------------------ rollouts

    async def _cancel_leftovers(self) -> None:
        """Rollouts a crashed run left queued or running belong to no step any more."""
        for status in ("queued", "running"):
            page = await self.store.list_rollouts(status=status, limit=1000)
            for r in page.rollouts:
                with contextlib.suppress(ConflictError):
                    await self.store.cancel(r.id)

    def _next_tasks(self, n: int) -> list[tuple[int, Any]]:
        out = []
        for _ in range(n):
            if not self.order:
                self.order = list(range(len(self.train)))
                self.rng.shuffle(self.order)
            i = self.order.pop()
            out.append((i, self.train[i]))
        return out

    async def _enqueue_step(self, step: int) -> list[str]:
        creates = []
        for j, (i, task) in enumerate(self._next_tasks(self.cfg.batch_size)):
            group = f"{self.run_id}-s{step}-t{j}"
            for k in range(self.algo.group_size):
                creates.append(self._create(f"{group}-g{k}", group, task, "train", {"step": step, "task": i}))
        return [r.id for r in await self.store.enqueue(creates)]

    def _create(self, rid: str, group: str, task: Any, mode: str, metadata: dict[str, Any]) -> RolloutCreate:
        return RolloutCreate(
            id=rid,
            input=task,
            group_id=group,
            mode=mode,
            max_attempts=self.cfg.max_attempts,
            timeout_s=self.cfg.rollout_timeout_s,
            metadata=metadata,
        )

    async def _finish_wait(self, ids: list[str]) -> tuple[list[Rollout], int]:
        """Wait for `ids` up to the step timeout; cancel the stragglers. (terminal rollouts, stragglers)"""
        done = await self.store.wait(ids, self.cfg.step_timeout_s) if ids else []
        late = set(ids) - {r.id for r in done}
        for rid in late:
            with contextlib.suppress(ConflictError):
                await self.store.cancel(rid)
        if late:
            log.warning(
                "%d rollout(s) did not finish within %g s: cancelled", len(late), self.cfg.step_timeout_s
            )
        return done, len(late)

    async def _adapt(self, rollout: Rollout) -> AdaptedRollout:
        spans = await winning_spans(self.store, rollout)
        return rollout_transitions(
            rollout.id, rollout.group_id, spans, agents=self.algo.agents, merge=self.algo.merge
        )

    async def _adapt_all(self, rollouts: Sequence[Rollout]) -> list[AdaptedRollout]:
        gate = asyncio.Semaphore(CONCURRENT_READS)

        async def one(r: Rollout) -> AdaptedRollout:
            async with gate:
                return await self._adapt(r)

        return list(await asyncio.gather(*(one(r) for r in rollouts)))

    async def _collect(self, ids: list[str], step: int) -> tuple[list[AdaptedRollout], dict[str, Any]]:
        done, late = await self._finish_wait(ids)
        succeeded = [r for r in done if r.status == "succeeded"]
        batch = await self._adapt_all(succeeded)
        stale = 0
        oldest = self.state["version"] - self.cfg.max_staleness
        for adapted in batch:  # async mode: calls from weights too old to correct are dropped
            # (a call recorded without a version, e.g. a span sent by the agent itself, is kept)
            keep = [
                t for t in adapted.transitions if t.weights_version is None or t.weights_version >= oldest
            ]
            stale += len(adapted.transitions) - len(keep)
            adapted.transitions = keep
        stats = sum((a.stats for a in batch[1:]), batch[0].stats) if batch else None
        row: dict[str, Any] = {
            "rollout/n": len(ids),
            "rollout/succeeded": len(succeeded),
            "rollout/failed": sum(1 for r in done if r.status == "failed"),
            "rollout/stragglers": late,
            "rollout/stale_transitions": stale,
        }
        if stats is not None:
            row.update(stats.metrics())
        return batch, row

    # ------------------------------------------------------------------ the update

    async def _update(self, batch: list[AdaptedRollout]) -> dict[str, Any]:
        t0 = time.perf_counter()
        row = await asyncio.to_thread(policy_update, self.policy, batch, self.algo, self.loss_fn)
        if "train/loss" not in row:
            return row  # nothing to learn from: the weights (and their version) stay
        self.state["version"] += 1
        t1 = time.perf_counter()
        await asyncio.to_thread(self.publish, self.state["version"])
        row["time/train_s"] = t1 - t0
        row["time/publish_s"] = time.perf_counter() - t1
        return row

    # ------------------------------------------------------------------ validation and reporting

    def _val_due(self, step: int) -> bool:
        every = self.cfg.val_every
        return bool(self.val) and every > 0 and (step % every == 0 or step == self.cfg.max_steps)

    async def _validate(self, step: int) -> None:
        tasks = self.val[: self.cfg.val_size] if self.cfg.val_size else self.val
        greedy = {"sampling": {"temperature": 0.0}}
        creates = [
            self._create(f"{self.run_id}-v{step}-{i}", f"{self.run_id}-v{step}-{i}", task, "val", greedy)
            for i, task in enumerate(tasks)
        ]
        ids = [r.id for r in await self.store.enqueue(creates)]
        done, late = await self._finish_wait(ids)
        values = []
        for r in done:
            spans = await winning_spans(self.store, r)
            values.append(rollout_return(rewards(spans), self.algo.credit, self.algo.gamma) if spans else 0.0)
        values += [0.0] * late
        mean = sum(values) / max(len(values), 1)
        await self._log({"step": step, "val/reward_mean": mean, "val/n": len(ids), "val/stragglers": late})
        self.console.log(f"validation at step {step}: reward {mean:.3f} over {len(ids)} task(s)")

    async def _log(self, row: dict[str, Any]) -> None:
        """Append to metrics.jsonl, and post the step's merged row to the server for the dashboard
        and /metrics. Posting is telemetry: a failure is logged, never raised into training."""
        self.metrics.log(row)
        merged = self._server_rows.setdefault(row["step"], {})
        merged.update(self.metrics.history[-1])
        try:
            await self.store.add_run_metrics(self.run_name, [merged])
        except Exception:
            log.warning("could not post metrics of step %s to the server", row["step"], exc_info=True)

    def _report(self, step: int, row: dict[str, Any]) -> None:
        def fmt(key: str, spec: str = ".3f") -> str:
            v = row.get(key)
            return "-" if v is None else format(v, spec)

        self.console.log(
            f"step {step}/{self.cfg.max_steps}: reward {fmt('rollout/reward_mean')} "
            f"loss {fmt('train/loss', '.4f')} kl {fmt('train/approx_kl', '.4f')} "
            f"tokens/s {fmt('train/tokens_per_s', '.0f')} rollouts {fmt('time/rollout_s', '.1f')}s "
            f"update {fmt('time/train_s', '.1f')}s"
        )

    def _save(self) -> Path:
        return save_checkpoint(
            self.policy,
            self.cfg.output_dir,
            weights_version=self.state["version"],
            trainer_state={"step": self.state["step"]},
        )


def _progress(console: Console) -> Progress:
    return Progress(
        SpinnerColumn(),
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=console,
    )


@contextlib.contextmanager
def _runner_thread(agent: RolloutAgent, url: str, token: str | None, n: int) -> Any:
    """Run `n` slots of `agent` in this process, on a thread with its own event loop."""
    from boltrl.runner.runner import Runner

    ready = threading.Event()
    holder: dict[str, Any] = {}

    async def main() -> None:
        async with StoreClient(url, token) as client:
            runner = Runner(client, agent, config=RunnerConfig(server=url, token=token, n=n))
            holder.update(runner=runner, loop=asyncio.get_running_loop())
            ready.set()
            await runner.run()

    thread = threading.Thread(target=lambda: asyncio.run(main()), name="boltrl-runner", daemon=True)
    thread.start()
    ready.wait(30)
    try:
        yield holder.get("runner")
    finally:
        if "runner" in holder:
            holder["loop"].call_soon_threadsafe(holder["runner"].stop, 5.0)
        thread.join(timeout=60)


def run_name(output_dir: str | Path) -> str:
    """A run id for the server from the output directory's name (`runs/calc` -> `calc`)."""
    name = re.sub(r"[^A-Za-z0-9_.:\-]+", "-", Path(output_dir).resolve().name).strip("-")
    return name[:128] or "run"


def load_tasks(data: Iterable[Any] | str | Path | None) -> list[Any]:
    """A dataset as a list of task inputs: any iterable, or a JSONL file (one task per line)."""
    if data is None:
        return []
    if isinstance(data, str | Path):
        path = Path(data)
        if not path.is_file():
            raise InvalidInputError(f"dataset file {path} does not exist")
        return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    return list(data)
