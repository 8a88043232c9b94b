"""`boltrl train CONFIG.yaml`: a training run described in one file, with command-line overrides.

```yaml
agent: examples.calc.agent:agent          # module:function of a @boltrl.rollout agent
train_data: examples/calc/data/train.jsonl
val_data: examples/calc/data/val.jsonl
trainer:   {model: smollm2-135m, batch_size: 8, max_steps: 50, output_dir: runs/calc}  # TrainerConfig
algorithm: {group_size: 4, lr: 1.0e-5}                                               # LightningRL
```
Relative data paths are read from the directory the command runs in.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import yaml

from boltrl.algorithms import LightningRL
from boltrl.config import TrainerConfig
from boltrl.errors import InvalidInputError
from boltrl.training.trainer import FitResult, Trainer

SECTIONS = ("agent", "train_data", "val_data", "trainer", "algorithm")


def load_config(path: str | Path | None) -> dict[str, Any]:
    if path is None:
        return {}
    p = Path(path)
    if not p.is_file():
        raise InvalidInputError(f"config file {p} does not exist")
    data = yaml.safe_load(p.read_text()) or {}
    if not isinstance(data, dict):
        raise InvalidInputError(f"{p}: the top level must be a mapping with keys {list(SECTIONS)}")
    unknown = sorted(set(data) - set(SECTIONS))
    if unknown:
        raise InvalidInputError(f"{p}: unknown key(s) {unknown}; valid: {list(SECTIONS)}")
    return data


def apply_overrides(data: dict[str, Any], overrides: list[str]) -> None:
    """`trainer.batch_size=4` style overrides, values parsed as YAML scalars."""
    for item in overrides:
        key, sep, raw = item.partition("=")
        section, dot, name = key.partition(".")
        if not sep or not dot or section not in ("trainer", "algorithm"):
            raise InvalidInputError(f"--set {item!r}: write trainer.FIELD=VALUE or algorithm.FIELD=VALUE")
        data.setdefault(section, {})[name] = yaml.safe_load(raw)


def build(section: str, cls: type[Any], values: dict[str, Any]) -> Any:
    fields = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(values) - fields)
    if unknown:
        raise InvalidInputError(f"{section}: unknown field(s) {unknown}; valid: {sorted(fields)}")
    try:
        return cls(**values)
    except TypeError as e:
        raise InvalidInputError(f"{section}: {e}") from None


def run_training(
    config: str | Path | None,
    *,
    agent: str | None = None,
    train_data: str | None = None,
    val_data: str | None = None,
    overrides: list[str] | None = None,
    trainer: dict[str, Any] | None = None,
    offline: str | None = None,
) -> FitResult:
    data = load_config(config)
    apply_overrides(data, overrides or [])
    data.setdefault("trainer", {}).update({k: v for k, v in (trainer or {}).items() if v is not None})
    if offline:  # recorded rollouts: no agent, no tasks
        fitter = Trainer(
            config=build("trainer", TrainerConfig, data["trainer"]),
            algorithm=build("algorithm", LightningRL, data.get("algorithm") or {}),
        )
        return fitter.fit_offline(offline)
    agent = agent or data.get("agent")
    train_data = train_data or data.get("train_data")
    if not agent or not train_data:
        raise InvalidInputError("give the agent (module:function) and train_data, in the config or as flags")
    from boltrl.runner import load_agent

    fit = Trainer(
        config=build("trainer", TrainerConfig, data["trainer"]),
        algorithm=build("algorithm", LightningRL, data.get("algorithm") or {}),
    )
    return fit.fit(load_agent(agent), train_data, val_data or data.get("val_data"))
