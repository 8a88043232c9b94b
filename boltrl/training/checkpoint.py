"""Checkpoints that survive a crash mid-save, resume that replays the same next step, and HF export.

A checkpoint is a directory `OUTPUT_DIR/checkpoints/step-00000012/` holding:

- `weights.safetensors`: the parameters training changes (every weight for a full fine-tune, the
  adapters for LoRA). Frozen weights come back from `PolicyConfig.model` when the policy is rebuilt.
- `optimizer.pt`: AdamW and LR-scheduler state.
- `rng.pt` and `rng.json`: torch (CPU and CUDA), Python and NumPy random states.
- `state.json`: step, weights_version, the policy config, and the caller's own JSON `trainer_state`.

It is written into a hidden temporary directory, every file and the directory fsync'ed, then renamed
into place in one step: a crash at any point leaves either the complete new checkpoint or none, and
the previous latest one untouched. Leftover temporary directories are ignored and removed by the next
save. `export_pretrained` writes a plain HF checkpoint (merged weights, config, tokenizer) that
`from_pretrained` and vLLM load, the same way.
"""

from __future__ import annotations

import contextlib
import copy
import dataclasses
import json
import os
import random
import re
import shutil
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from boltrl.errors import InvalidInputError, NotFoundError
from boltrl.training.policy import Policy

FORMAT = 1
CHECKPOINTS = "checkpoints"
_STEP_DIR = re.compile(r"^step-(\d+)$")


@dataclass
class CheckpointInfo:
    """What `load_checkpoint` restored besides the tensors."""

    path: Path
    step: int
    weights_version: int
    trainer_state: dict[str, Any] = field(default_factory=dict)


def checkpoint_dir(output_dir: str | os.PathLike[str]) -> Path:
    return Path(output_dir) / CHECKPOINTS


def list_checkpoints(output_dir: str | os.PathLike[str]) -> list[Path]:
    """Complete checkpoints under `output_dir`, oldest step first."""
    root = checkpoint_dir(output_dir)
    if not root.is_dir():
        return []
    found = [
        (int(m.group(1)), p)
        for p in root.iterdir()
        if (m := _STEP_DIR.match(p.name)) and (p / "state.json").is_file()
    ]
    return [p for _, p in sorted(found)]


def latest_checkpoint(output_dir: str | os.PathLike[str]) -> Path | None:
    """The checkpoint with the highest step under `output_dir`, or None."""
    found = list_checkpoints(output_dir)
    return found[-1] if found else None


def save_checkpoint(
    policy: Policy,
    output_dir: str | os.PathLike[str],
    *,
    weights_version: int | None = None,
    trainer_state: dict[str, Any] | None = None,
    keep_last: int | None = 3,
) -> Path:
    """Save `policy` at its current step atomically; keep the newest `keep_last` (None: all)."""
    from safetensors.torch import save_file

    state_json = json.dumps(
        {
            "format": FORMAT,
            "step": policy.step,
            "weights_version": policy.step if weights_version is None else int(weights_version),
            "lora": policy.is_lora,
            "policy_config": dataclasses.asdict(policy.config),
            "trainer_state": trainer_state or {},
            "saved_at": time.time(),
        },
        indent=2,
    )  # serialised first: a trainer_state that is not JSON fails before anything is written
    root = checkpoint_dir(output_dir)
    root.mkdir(parents=True, exist_ok=True)
    final = root / f"step-{policy.step:08d}"
    tmp = root / f".tmp-{final.name}-{uuid.uuid4().hex[:8]}"
    tmp.mkdir()
    try:
        weights = {k: v.detach().cpu().contiguous() for k, v in policy.trainable_state_dict().items()}
        save_file(weights, str(tmp / "weights.safetensors"), metadata={"format": "pt"})
        torch.save(
            {"optimizer": policy.optimizer.state_dict(), "scheduler": policy.scheduler.state_dict()},
            tmp / "optimizer.pt",
        )
        _save_rng(tmp)
        (tmp / "state.json").write_text(state_json)
        for f in tmp.iterdir():
            _fsync(f)
        _fsync(tmp)
        _replace_dir(tmp, final)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    _fsync(root)
    _prune(root, keep_last)
    return final


def load_checkpoint(
    policy: Policy, path: str | os.PathLike[str], *, restore_rng: bool = True
) -> CheckpointInfo:
    """Restore weights, optimizer, scheduler, step and (by default) RNG states into `policy`.

    `policy` must be built with the same model and LoRA setting as the one saved (a fresh `Policy`
    from the same `PolicyConfig`); its next `train_step` then equals the one the saver would have taken.
    """
    from safetensors.torch import load_file

    path = Path(path)
    if not (path / "state.json").is_file():
        raise NotFoundError(f"no checkpoint at {path} (state.json missing)")
    meta = json.loads((path / "state.json").read_text())
    if meta.get("format") != FORMAT:
        raise InvalidInputError(f"checkpoint {path} has format {meta.get('format')}, expected {FORMAT}")
    if bool(meta["lora"]) != policy.is_lora:
        saved = "LoRA" if meta["lora"] else "full fine-tune"
        raise InvalidInputError(
            f"checkpoint {path} is a {saved}; build the Policy with the same `lora` setting"
        )
    own = policy.trainable_state_dict()
    saved_weights = load_file(str(path / "weights.safetensors"))
    if set(saved_weights) != set(own):
        diff = sorted(set(saved_weights) ^ set(own))[:5]
        raise InvalidInputError(f"checkpoint {path} does not match this model's parameters (e.g. {diff})")
    with torch.no_grad():
        for name, value in saved_weights.items():
            own[name].copy_(value)
    opt = torch.load(path / "optimizer.pt", map_location="cpu", weights_only=True)
    policy.optimizer.load_state_dict(opt["optimizer"])
    policy.scheduler.load_state_dict(opt["scheduler"])
    policy.step = int(meta["step"])
    if restore_rng:
        _load_rng(path)
    return CheckpointInfo(path, policy.step, int(meta["weights_version"]), dict(meta["trainer_state"]))


def export_pretrained(policy: Policy, path: str | os.PathLike[str]) -> Path:
    """Write the serving weights (LoRA merged) as a plain HF checkpoint directory, atomically.

    The directory loads with `AutoModelForCausalLM.from_pretrained`, `boltrl.models.load` and vLLM
    (`vllm serve PATH`, or a running server's reload): the vLLM publish path.
    """
    from safetensors.torch import save_file

    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.parent / f".tmp-{target.name}-{uuid.uuid4().hex[:8]}"
    tmp.mkdir()
    try:
        weights: dict[str, torch.Tensor] = {}
        seen: set[tuple[int, tuple[int, ...]]] = set()
        for name, value in policy.state_dict_for_serving().items():
            key = (value.data_ptr(), tuple(value.shape))
            if key in seen:  # tied weights (lm_head = embed_tokens): stored once, re-tied on load
                continue
            seen.add(key)
            weights[name] = value.detach().cpu().contiguous()
        save_file(weights, str(tmp / "model.safetensors"), metadata={"format": "pt"})
        base = policy.base_model
        config = copy.deepcopy(base.config)
        config.use_cache = True  # training turned it off; a served model wants its KV cache
        config.save_pretrained(tmp)
        if getattr(base, "generation_config", None) is not None:
            base.generation_config.save_pretrained(tmp)
        policy.tokenizer.save_pretrained(tmp)
        for f in tmp.iterdir():
            _fsync(f)
        _fsync(tmp)
        _replace_dir(tmp, target)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    _fsync(target.parent)
    return target


# ---------------------------------------------------------------------- helpers


def _fsync(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _replace_dir(src: Path, dst: Path) -> None:
    """Rename `src` to `dst`; an existing `dst` (the same step saved again) is moved aside first."""
    if not dst.exists():
        os.rename(src, dst)
        return
    old = dst.parent / f".tmp-old-{dst.name}-{uuid.uuid4().hex[:8]}"
    os.rename(dst, old)
    os.rename(src, dst)
    shutil.rmtree(old, ignore_errors=True)


def _prune(root: Path, keep_last: int | None) -> None:
    for p in root.iterdir():
        if p.name.startswith(".tmp-") and p.is_dir():  # left by a crash mid-save
            shutil.rmtree(p, ignore_errors=True)
    if keep_last is None:
        return
    done = list_checkpoints(root.parent)
    for p in done[: max(0, len(done) - max(1, keep_last))]:
        shutil.rmtree(p, ignore_errors=True)


def _save_rng(out: Path) -> None:
    states: dict[str, Any] = {"torch": torch.get_rng_state()}
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        states["cuda"] = torch.cuda.get_rng_state_all()
    torch.save(states, out / "rng.pt")
    version, internal, gauss = random.getstate()
    py: dict[str, Any] = {"python": [version, list(internal), gauss]}
    with contextlib.suppress(ImportError):
        import numpy as np

        name, keys, pos, has_gauss, cached = np.random.get_state(legacy=True)
        py["numpy"] = [name, np.asarray(keys).tolist(), pos, has_gauss, cached]
    (out / "rng.json").write_text(json.dumps(py))


def _load_rng(path: Path) -> None:
    states = torch.load(path / "rng.pt", map_location="cpu", weights_only=True)
    torch.set_rng_state(states["torch"])
    if "cuda" in states and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(states["cuda"])
    py = json.loads((path / "rng.json").read_text())
    version, internal, gauss = py["python"]
    random.setstate((version, tuple(internal), gauss))
    if "numpy" in py:
        with contextlib.suppress(ImportError):
            import numpy as np

            name, keys, pos, has_gauss, cached = py["numpy"]
            np.random.set_state((name, np.asarray(keys, dtype=np.uint32), pos, has_gauss, cached))
