"""The `boltrl` command line. `main(argv) -> int` runs it without a subprocess (tests do).

Each command is a thin shell: it builds the component's config (flags over `BOLTRL_*` environment)
and calls the component's own entry point, so everything here is also reachable from Python.
"""

from __future__ import annotations

import sys
from collections.abc import Awaitable, Callable
from typing import Annotated, Any, TypeVar

import typer

from boltrl.config import RunnerConfig, ServerConfig, from_env
from boltrl.errors import BoltrlError

T = TypeVar("T")

app = typer.Typer(
    name="boltrl",
    help="Train AI agents with reinforcement learning without rewriting them.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)


@app.command()
def serve(
    host: Annotated[str | None, typer.Option(help="Interface to bind (default 127.0.0.1).")] = None,
    port: Annotated[int | None, typer.Option(help="TCP port (default 4747).")] = None,
    db: Annotated[str | None, typer.Option(help="SQLite file, postgresql://... or 'memory'.")] = None,
    token: Annotated[str | None, typer.Option(help="Require 'Authorization: Bearer TOKEN'.")] = None,
    heartbeat_timeout_s: Annotated[float | None, typer.Option(help="Mark attempts lost after this.")] = None,
    model: Annotated[
        str | None, typer.Option(help="Serve this model at the gateway (smollm2-135m, tiny-random, a path).")
    ] = None,
    backend: Annotated[str | None, typer.Option(help="hf (default), vllm or openai.")] = None,
    upstream: Annotated[str | None, typer.Option(help="vllm/openai endpoint base URL (…/v1).")] = None,
    device: Annotated[str | None, typer.Option(help="hf backend device (cpu, cuda).")] = None,
    public_url: Annotated[
        str | None,
        typer.Option(help="URL runners and agents reach this server at (default http://HOST:PORT)."),
    ] = None,
) -> None:
    """Run the boltrl server: store, REST API, OTLP ingest, dashboard at /, and with --model the gateway."""
    from boltrl.server.app import serve as run_server

    config = from_env(
        ServerConfig,
        host=host,
        port=port,
        db=db,
        token=token,
        heartbeat_timeout_s=heartbeat_timeout_s,
        model=model,
        backend=backend,
        upstream=upstream,
        device=device,
        public_url=public_url,
    )
    run_server(config)


@app.command()
def runner(
    server: Annotated[str | None, typer.Option(help="boltrl server URL.")] = None,
    token: Annotated[str | None, typer.Option(help="Server bearer token.")] = None,
    agent: Annotated[str | None, typer.Option(help="Agent as module:function.")] = None,
    command: Annotated[
        str | None, typer.Option(help="Command agent: a command line run per rollout.")
    ] = None,
    n: Annotated[int | None, typer.Option("-n", help="Concurrent rollouts.")] = None,
    worker_id: Annotated[str | None, typer.Option(help="Worker name (default host-pid).")] = None,
    max_rollouts: Annotated[int | None, typer.Option(help="Exit after this many rollouts.")] = None,
    ray_address: Annotated[
        str | None, typer.Option(help="Run the -n slots as Ray actors on this cluster (HOST:PORT, auto).")
    ] = None,
    ray_actors: Annotated[int | None, typer.Option(help="Ray actors (default: one per 8 slots).")] = None,
) -> None:
    """Claim rollouts from a server and run the agent on them until stopped."""
    from boltrl.runner import run_runner

    if not agent and not command:
        raise typer.BadParameter("give --agent module:function or --command 'CMD ...'")
    config = from_env(
        RunnerConfig,
        server=server,
        token=token,
        agent=agent,
        command=command,
        n=n,
        worker_id=worker_id,
        max_rollouts=max_rollouts,
        ray_address=ray_address,
        ray_actors=ray_actors,
    )
    if config.ray_address:
        from boltrl.runner.ray import run_ray_runners

        run_ray_runners(config)
        return
    run_runner(config)


@app.command()
def reward(
    value: Annotated[float, typer.Argument(help="The reward.")],
    name: Annotated[str | None, typer.Option(help="Reward name (several per rollout are allowed).")] = None,
) -> None:
    """Report a reward from inside a command agent (reads BOLTRL_SERVER, BOLTRL_ROLLOUT_ID, ...)."""
    from boltrl.agent import report_reward_from_env

    report_reward_from_env(value, name=name)


@app.command()
def train(
    config: Annotated[
        str | None, typer.Argument(help="YAML: agent, train_data, val_data, trainer, algorithm.")
    ] = None,
    agent: Annotated[str | None, typer.Option(help="Agent as module:function.")] = None,
    train_data: Annotated[str | None, typer.Option(help="Training tasks, JSONL.")] = None,
    val_data: Annotated[str | None, typer.Option(help="Validation tasks, JSONL.")] = None,
    model: Annotated[str | None, typer.Option(help="Policy model (default smollm2-135m).")] = None,
    max_steps: Annotated[int | None, typer.Option(help="Policy updates.")] = None,
    output_dir: Annotated[
        str | None, typer.Option(help="Run directory (resumes if it has checkpoints).")
    ] = None,
    server: Annotated[str | None, typer.Option(help="Attach to this server; runners run elsewhere.")] = None,
    n_runners: Annotated[int | None, typer.Option(help="Local runner slots (0: none).")] = None,
    offline: Annotated[
        str | None, typer.Option(help="Train from a `boltrl dump` file instead of running agents.")
    ] = None,
    set_: Annotated[
        list[str] | None,
        typer.Option("--set", help="Override a field: trainer.batch_size=4, algorithm.lr=1e-5"),
    ] = None,
) -> None:
    """Train a policy on an agent's rollouts with LightningRL (see docs/training.md)."""
    from boltrl.training.run import run_training

    run_training(
        config,
        agent=agent,
        train_data=train_data,
        val_data=val_data,
        overrides=set_ or [],
        offline=offline,
        trainer={
            "model": model,
            "max_steps": max_steps,
            "output_dir": output_dir,
            "server": server,
            "n_runners": n_runners,
        },
    )


models_app = typer.Typer(help="Models: prepare the registry's models, list them.", no_args_is_help=True)
app.add_typer(models_app, name="models")


@app.command()
def sft(
    data: Annotated[str, typer.Argument(help="Demonstrations, JSONL: {messages, tools} per line.")],
    model: Annotated[str | None, typer.Option(help="Model to start from (default smollm2-135m).")] = None,
    output_dir: Annotated[str | None, typer.Option(help="Run directory (model in DIR/model).")] = None,
    epochs: Annotated[int | None, typer.Option(help="Passes over the demonstrations (default 1).")] = None,
    batch_size: Annotated[int | None, typer.Option(help="Assistant messages per step (default 16).")] = None,
    lr: Annotated[float | None, typer.Option(help="AdamW learning rate (default 1e-5).")] = None,
    device: Annotated[str | None, typer.Option(help="cpu (default), cuda, mps.")] = None,
) -> None:
    """Supervised warm start on demonstrations before RL (see docs/trainer.md)."""
    from boltrl.training.sft import SFTConfig, fit_sft, read_conversations

    options: dict[str, Any] = {"model": model, "output_dir": output_dir, "epochs": epochs}
    options.update({"batch_size": batch_size, "lr": lr, "device": device})
    config = SFTConfig(**{k: v for k, v in options.items() if v is not None})
    path = fit_sft(read_conversations(data), config)
    typer.echo(f"fine-tuned model in {path}")


@models_app.command("list")
def models_list() -> None:
    """The registry's models, whether each is prepared, and where."""
    from rich.console import Console
    from rich.table import Table

    from boltrl.models import list_models

    table = Table("name", "prepared", "path", "description")
    for m in list_models():
        table.add_row(m["name"], "yes" if m["prepared"] else "no", str(m["path"]), m["description"])
    Console().print(table)


@models_app.command("prepare")
def models_prepare(name: Annotated[str, typer.Argument(help="Registry name, e.g. smollm2-135m.")]) -> None:
    """Build the model's cached HF checkpoint (once; later calls return at once)."""
    from boltrl.models import prepare

    print(prepare(name))


# ---------------------------------------------------------------- operating a server

ServerOpt = Annotated[
    str | None, typer.Option(help="boltrl server URL (BOLTRL_SERVER; default http://127.0.0.1:4747).")
]
TokenOpt = Annotated[str | None, typer.Option(help="Server bearer token (prefer BOLTRL_TOKEN).")]
DbOpt = Annotated[
    str | None, typer.Option(help="Read a store file (SQLite path) directly instead of a server.")
]
JsonOpt = Annotated[bool, typer.Option("--json", help="Print JSON instead of tables.")]
CLI_RETRY_FOR_S = 5.0
"""How long an interactive command keeps retrying an unreachable server (BOLTRL_RETRY_FOR_S to change)."""


def _with_store(
    server: str | None, token: str | None, db: str | None, use: Callable[[Any], Awaitable[T]]
) -> T:
    """Run `use(store)` on a `StoreClient` for the server (or the store file `db`), then close it."""
    import asyncio
    import os

    from boltrl.config import ClientConfig
    from boltrl.store import open_store
    from boltrl.store.client import StoreClient

    async def go() -> T:
        store: Any
        if db is not None:
            store = open_store(db)
        else:
            config = from_env(ClientConfig, server=server, token=token)
            if "BOLTRL_RETRY_FOR_S" not in os.environ:
                config.retry_for_s = CLI_RETRY_FOR_S
            store = StoreClient(config=config)
        try:
            return await use(store)
        finally:
            await store.close()

    return asyncio.run(go())


def _console() -> Any:
    from rich.console import Console

    return Console()


@app.command()
def status(
    server: ServerOpt = None,
    token: TokenOpt = None,
    db: DbOpt = None,
    window_s: Annotated[float, typer.Option(help="Throughput over this many seconds.")] = 60.0,
    as_json: JsonOpt = False,
) -> None:
    """Queue depth, running attempts, workers, throughput and training runs of a server."""
    from boltrl import console

    _with_store(
        server, token, db, lambda st: console.status(st, _console(), window_s=window_s, as_json=as_json)
    )


rollouts_app = typer.Typer(
    help="List rollouts (newest first); 'boltrl rollouts show ID' for one.", invoke_without_command=True
)
app.add_typer(rollouts_app, name="rollouts")


@rollouts_app.callback()
def rollouts_list(
    ctx: typer.Context,
    status: Annotated[str | None, typer.Option(help="queued, running, succeeded, failed, cancelled.")] = None,
    group_id: Annotated[str | None, typer.Option(help="Only this group (task).")] = None,
    mode: Annotated[str | None, typer.Option(help="train, val or test.")] = None,
    limit: Annotated[int, typer.Option(help="How many to show.")] = 20,
    oldest_first: Annotated[bool, typer.Option(help="Queue order instead of newest first.")] = False,
    server: ServerOpt = None,
    token: TokenOpt = None,
    db: DbOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """List rollouts, newest first, filtered by status, group and mode."""
    if ctx.invoked_subcommand is not None:
        return
    from boltrl import console

    order = "asc" if oldest_first else "desc"
    _with_store(
        server,
        token,
        db,
        lambda st: console.rollouts(
            st,
            _console(),
            status=status,
            group_id=group_id,
            mode=mode,
            limit=limit,
            order=order,
            as_json=as_json,
        ),
    )


@rollouts_app.command("show")
def rollouts_show(
    rollout_id: Annotated[str, typer.Argument(help="The rollout's id.")],
    full: Annotated[bool, typer.Option(help="Show messages whole, not cut at 300 characters.")] = False,
    server: ServerOpt = None,
    token: TokenOpt = None,
    db: DbOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """One rollout with its attempts, spans, model calls (messages, tool calls, tokens) and rewards."""
    from boltrl import console

    _with_store(
        server,
        token,
        db,
        lambda st: console.show_rollout(st, _console(), rollout_id, full=full, as_json=as_json),
    )


@app.command()
def dump(
    out: Annotated[str, typer.Option(help="JSON Lines file to write (.gz: compressed).")],
    status: Annotated[str | None, typer.Option(help="Only rollouts with this status.")] = None,
    mode: Annotated[str | None, typer.Option(help="Only train, val or test rollouts.")] = None,
    group_id: Annotated[str | None, typer.Option(help="Only this group.")] = None,
    server: ServerOpt = None,
    token: TokenOpt = None,
    db: DbOpt = None,
) -> None:
    """Export rollouts with their attempts and spans, one JSON object per line."""
    from rich.progress import Progress

    from boltrl import dump as dumps

    async def use(store: Any) -> int:
        counts = await store.count_rollouts()
        total = counts.get(status, 0) if status else sum(counts.values())
        with Progress(console=_err_console(), transient=True) as progress:
            task = progress.add_task("dumping", total=total if group_id is None and mode is None else None)
            return await dumps.dump(
                store,
                out,
                status=status,
                mode=mode,
                group_id=group_id,
                progress=lambda n: progress.advance(task, n),
            )

    n = _with_store(server, token, db, use)
    print(f"wrote {n} rollouts to {out}")


@app.command()
def replay(
    path: Annotated[str, typer.Argument(help="A dump written by 'boltrl dump'.")],
    server: ServerOpt = None,
    token: TokenOpt = None,
    db: DbOpt = None,
) -> None:
    """Load a dump into a server (or a store file with --db): ids kept, safe to repeat."""
    from rich.progress import DownloadColumn, Progress

    from boltrl import dump as dumps

    async def use(store: Any) -> Any:
        with Progress(
            *Progress.get_default_columns(), DownloadColumn(), console=_err_console(), transient=True
        ) as bar:
            task = bar.add_task("replaying", total=dumps.dump_size(path))
            return await dumps.replay(store, path, progress=lambda n: bar.advance(task, n))

    result = _with_store(server, token, db, use)
    print(f"replayed {result.rollouts} rollouts ({result.spans} spans) from {path}")


def _err_console() -> Any:
    from rich.console import Console

    return Console(stderr=True)


def main(argv: list[str] | None = None) -> int:
    """Run the CLI with `argv` (default: sys.argv[1:]) and return the exit code."""
    try:
        app(args=argv, standalone_mode=False)
    except typer.Exit as e:
        return int(e.exit_code or 0)
    except typer.Abort:
        return 130
    except (typer.BadParameter, BoltrlError) as e:
        print(f"boltrl: error: {e}", file=sys.stderr)
        return 2
    except Exception as e:  # click usage errors
        from click.exceptions import ClickException

        if isinstance(e, ClickException):
            e.show()
            return e.exit_code
        raise
    return 0


def run() -> None:
    sys.exit(main())


__all__ = ["app", "main", "run"]
