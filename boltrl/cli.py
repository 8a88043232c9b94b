"""The `boltrl` command line. `main(argv) -> int` runs it without a subprocess (tests do).

Each command is a thin shell: it builds the component's config (flags over `BOLTRL_*` environment)
and calls the component's own entry point, so everything here is also reachable from Python.
"""

from __future__ import annotations

import sys
from typing import Annotated

import typer

from boltrl.config import RunnerConfig, ServerConfig, from_env
from boltrl.errors import BoltrlError

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
    db: Annotated[str | None, typer.Option(help="SQLite file, sqlite:///PATH or 'memory'.")] = None,
    token: Annotated[str | None, typer.Option(help="Require 'Authorization: Bearer TOKEN'.")] = None,
    heartbeat_timeout_s: Annotated[float | None, typer.Option(help="Mark attempts lost after this.")] = None,
    model: Annotated[
        str | None, typer.Option(help="Serve this model at the gateway (smollm2-135m, tiny-random, a path).")
    ] = None,
    backend: Annotated[str | None, typer.Option(help="hf (default), vllm or openai.")] = None,
    upstream: Annotated[str | None, typer.Option(help="vllm/openai endpoint base URL (…/v1).")] = None,
    device: Annotated[str | None, typer.Option(help="hf backend device (cpu, cuda).")] = None,
) -> None:
    """Run the boltrl server: store, REST API, OTLP ingest, and with --model the gateway."""
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
    )
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
