"""The in-process transformers backend: batched sampling with exact token ids and logprobs.

Requests are rendered to token ids on the caller's event loop and queued; one worker thread takes
what is pending (up to `max_batch_size` rows, waiting `batch_wait_ms` for more), left-pads the prompts
and runs ONE decoding loop over them with the KV cache. Each row has its own temperature, top-p,
seeded `torch.Generator`, stop strings and token budget, and leaves the batch when it finishes. The
loop is written out rather than `model.generate` so that per-row parameters and the logprob of each
sampled token, `log_softmax(logits / T)` (T = 1 for greedy), are exact. Weight swaps
(`load_weights`) take the same lock as a batch, so every result comes from one `weights_version`.

Deliberately left out: continuous batching (a request arriving mid-batch waits for the next one),
streaming token by token, beam search, penalties.
"""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import os
import queue
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from boltrl import models
from boltrl.errors import InvalidInputError
from boltrl.inference.base import BackendError, ChatResult, CompletionResult, bad_request
from boltrl.inference.params import SamplingParams, sampling_params
from boltrl.inference.prompts import ChatPrompter
from boltrl.inference.responses import Sampled, chat_result, completion_result

# End-of-turn tokens of common chat formats; those in a model's vocabulary also end a choice.
_END_TOKENS = ("<|im_end|>", "<|endoftext|>", "<|eot_id|>", "<|end_of_text|>", "<end_of_turn>", "<|end|>")


@dataclass
class _Row:
    """One choice being generated: its prompt, its sampling state and what it has produced."""

    prompt_ids: list[int]
    temperature: float
    top_p: float
    max_new: int
    stops: tuple[str, ...]
    top_logprobs: int
    generator: torch.Generator | None
    out: Sampled = field(default_factory=Sampled)
    done: bool = False


@dataclass
class _Job:
    rows: list[_Row]
    loop: asyncio.AbstractEventLoop
    future: asyncio.Future[int]
    """Resolved with the weights version that produced the rows."""


class HFBackend:
    """A transformers causal LM served in-process (see the module docstring)."""

    def __init__(
        self,
        model_name_or_path: str | os.PathLike[str] = "tiny-random",
        device: str = "cpu",
        dtype: Any = None,
        *,
        max_batch_size: int = 16,
        max_new_tokens: int = 512,
        batch_wait_ms: float = 5.0,
        served_name: str | None = None,
        model: Any = None,
        tokenizer: Any = None,
    ) -> None:
        if model is None or tokenizer is None:
            model, tokenizer = models.load(model_name_or_path, device=device, dtype=dtype)
        self.model, self.tokenizer = model.eval(), tokenizer
        self.device = next(model.parameters()).device
        source = os.fspath(model_name_or_path)
        self.name = served_name or (Path(source).name if Path(source).is_dir() else source)
        self.max_batch_size, self.max_new_tokens = max_batch_size, max_new_tokens
        self.batch_wait_s = batch_wait_ms / 1000
        self.context_length = int(getattr(model.config, "max_position_embeddings", 0) or 1 << 20)
        self.weights_version = 0
        self.prompter = ChatPrompter(tokenizer)
        self.template_tools = self.prompter.template_tools
        self.eos_ids = self._eos_ids()
        pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else min(self.eos_ids)
        self.pad_id = int(pad)
        accepted = inspect.signature(model.forward).parameters
        # transformers 5.x renamed `past_key_values` to `cache`; support both.
        self._cache_kw = "cache" if "cache" in accepted else "past_key_values"
        self._keep_last = {"logits_to_keep": 1} if "logits_to_keep" in accepted else {}
        self._queue: queue.Queue[_Job | None] = queue.Queue()
        self._lock = threading.Lock()  # held by a batch and by a weight swap
        self._submit_lock = threading.Lock()  # orders submissions against close()
        self._thread: threading.Thread | None = None
        self._closed = False

    # ------------------------------------------------------------------ the gateway's interface

    def models(self) -> list[str]:
        return [self.name]

    async def chat(self, body: dict[str, Any]) -> ChatResult:
        params = sampling_params(body, chat=True)
        prompt_ids, parse_tools = self.prompter.chat_ids(body)
        rows, version = await self._generate(prompt_ids, params)
        return chat_result(
            [r.out for r in rows], prompt_ids, model=self.name, weights_version=version,
            parse_tools=parse_tools, logprobs=params.logprobs, token_text=self._token_text,
        )  # fmt: skip

    async def complete(self, body: dict[str, Any]) -> CompletionResult:
        params = sampling_params(body, chat=False)
        prompt_ids = self.prompter.completion_ids(body.get("prompt"))
        rows, version = await self._generate(prompt_ids, params)
        return completion_result(
            [r.out for r in rows], prompt_ids, model=self.name, weights_version=version,
            logprobs=params.logprobs, token_text=self._token_text,
        )  # fmt: skip

    def load_weights(self, state_dict: dict[str, Any], version: int | None = None) -> None:
        """Copy `state_dict` (all or some parameters) into the model between batches.

        Keys are the model's own `state_dict()` names (unwrap or merge a PEFT model first). Sets
        `weights_version` to `version`, or to the current version + 1.
        """
        own = self.model.state_dict()
        unknown = sorted(set(state_dict) - set(own))
        if unknown:
            raise InvalidInputError(f"load_weights: unknown parameter names {unknown[:5]}")
        with self._lock, torch.no_grad():
            for key, value in state_dict.items():
                own[key].copy_(value)
            self.weights_version = self.weights_version + 1 if version is None else int(version)

    def load_checkpoint(self, path: str | os.PathLike[str], version: int) -> None:
        """Load the weights of an HF checkpoint directory (`*.safetensors`) as `version`."""
        from safetensors.torch import load_file

        files = sorted(Path(path).glob("*.safetensors"))
        if not files:
            raise InvalidInputError(f"no *.safetensors weights in {path}")
        state: dict[str, Any] = {}
        for f in files:
            state.update(load_file(str(f)))
        self.load_weights(state, version)

    async def close(self) -> None:
        with self._submit_lock:
            self._closed = True
            thread, self._thread = self._thread, None
            if thread is not None:
                self._queue.put(None)  # after every accepted request: those still finish
        if thread is not None:
            await asyncio.to_thread(thread.join)

    # ------------------------------------------------------------------ helpers

    def _eos_ids(self) -> frozenset[int]:
        ids = {self.tokenizer.eos_token_id}
        configured = getattr(getattr(self.model, "generation_config", None), "eos_token_id", None)
        ids |= set(configured) if isinstance(configured, list) else {configured}
        vocab = self.tokenizer.get_vocab()
        ids |= {vocab[t] for t in _END_TOKENS if t in vocab}
        return frozenset(int(i) for i in ids if i is not None)

    def _token_text(self, token_id: int) -> str:
        return str(self.tokenizer.decode([token_id]))

    # ------------------------------------------------------------------ queue and worker

    async def _generate(self, prompt_ids: list[int], params: SamplingParams) -> tuple[list[_Row], int]:
        room = self.context_length - len(prompt_ids)
        if room <= 0:
            raise bad_request(
                f"the prompt has {len(prompt_ids)} tokens; this model's context is {self.context_length}",
                "messages",
                "context_length_exceeded",
            )
        max_new = min(params.max_tokens or self.max_new_tokens, room)
        rows = []
        for i in range(params.n):
            gen = None
            if params.temperature > 0:
                gen = torch.Generator(device=self.device).manual_seed(params.choice_seed(i))
            rows.append(
                _Row(
                    prompt_ids,
                    params.temperature,
                    params.top_p,
                    max_new,
                    params.stop,
                    params.top_logprobs,
                    gen,
                )
            )
        for r in rows:
            r.out.temperature = r.temperature or 1.0
        loop = asyncio.get_running_loop()
        job = _Job(rows, loop, loop.create_future())
        with self._submit_lock:
            if self._closed:
                raise BackendError(503, "the inference backend is closed", "server_error")
            if self._thread is None:
                self._thread = threading.Thread(target=self._worker, name="boltrl-hf-backend", daemon=True)
                self._thread.start()
            self._queue.put(job)
        version = await job.future
        return rows, version

    def _worker(self) -> None:
        held: _Job | None = None
        stopping = False
        while not stopping:
            job = held or self._queue.get()
            held = None
            if job is None:
                break
            jobs, n_rows = [job], len(job.rows)
            deadline = time.monotonic() + self.batch_wait_s
            while n_rows < self.max_batch_size:
                try:
                    nxt = self._queue.get(timeout=max(0.0, deadline - time.monotonic()))
                except queue.Empty:
                    break
                if nxt is None:
                    stopping = True
                    break
                if n_rows + len(nxt.rows) > self.max_batch_size:
                    held = nxt
                    break
                jobs.append(nxt)
                n_rows += len(nxt.rows)
            jobs = [j for j in jobs if not j.future.cancelled()]
            if jobs:
                self._run(jobs)
        while True:  # nothing is queued after the stop sentinel, but fail anything left, never hang
            try:
                left = self._queue.get_nowait()
            except queue.Empty:
                break
            if left is not None:
                _resolve(left, BackendError(503, "the inference backend is closed", "server_error"))

    def _run(self, jobs: list[_Job]) -> None:
        try:
            with self._lock, torch.inference_mode():
                version = self.weights_version
                self._decode([r for j in jobs for r in j.rows])
        except Exception as e:  # reported to every waiting request, the worker lives on
            for j in jobs:
                _resolve(j, BackendError(500, f"generation failed: {type(e).__name__}: {e}", "server_error"))
            return
        for j in jobs:
            _resolve(j, version)

    # ------------------------------------------------------------------ the decoding loop

    def _forward(self, ids: torch.Tensor, mask: torch.Tensor, pos: torch.Tensor, cache: Any) -> torch.Tensor:
        kw = {self._cache_kw: cache, **self._keep_last}
        out = self.model(input_ids=ids, attention_mask=mask, position_ids=pos, use_cache=True, **kw)
        return out.logits[:, -1, :].float()  # (A, V)

    def _decode(self, rows: list[_Row]) -> None:
        from transformers import DynamicCache

        width = max(len(r.prompt_ids) for r in rows)
        ids = torch.full((len(rows), width), self.pad_id, dtype=torch.long)  # (B, T), left-padded
        mask = torch.zeros((len(rows), width), dtype=torch.long)  # (B, T)
        for i, r in enumerate(rows):
            ids[i, width - len(r.prompt_ids) :] = torch.tensor(r.prompt_ids)
            mask[i, width - len(r.prompt_ids) :] = 1
        ids, mask = ids.to(self.device), mask.to(self.device)
        pos = (mask.cumsum(-1) - 1).clamp(min=0)  # (B, T): each row's positions start at 0
        cache = DynamicCache(config=self.model.config)
        logits = self._forward(ids, mask, pos, cache)
        active = list(range(len(rows)))  # batch index -> row index
        while True:
            tokens = self._sample(logits, [rows[i] for i in active])  # (A,)
            keep = [k for k, i in enumerate(active) if not rows[i].done]
            if not keep:
                break
            if len(keep) < len(active):  # finished rows leave the batch and the cache
                idx = torch.tensor(keep, device=self.device)
                cache.batch_select_indices(idx)
                mask, pos, tokens = mask[idx], pos[idx], tokens[idx]
                active = [active[k] for k in keep]
            mask = torch.cat([mask, mask.new_ones((len(active), 1))], dim=1)
            pos = pos[:, -1:] + 1
            logits = self._forward(tokens[:, None], mask, pos, cache)
        for r in rows:
            text = str(self.tokenizer.decode(r.out.ids, skip_special_tokens=True))
            cut = [text.find(s) for s in r.stops if s in text]
            r.out.text = text[: min(cut)] if cut else text

    def _sample(self, logits: torch.Tensor, rows: list[_Row]) -> torch.Tensor:
        """Pick each row's next token, record its logprob, and mark rows that are finished."""
        temps = torch.tensor([r.temperature or 1.0 for r in rows], device=logits.device)
        logp = torch.log_softmax(logits / temps[:, None], dim=-1)  # (A, V)
        tokens = logits.argmax(dim=-1)  # (A,): greedy rows keep these
        sampled = [k for k, r in enumerate(rows) if r.generator is not None]
        if sampled:
            # Inverse-CDF sampling with one uniform draw per row from the row's own generator: as
            # exact as torch.multinomial, batched, and about 50x faster for a 49k vocabulary on CPU.
            probs = logp[sampled].exp().double()  # (S, V)
            for j, k in enumerate(sampled):
                if rows[k].top_p < 1.0:
                    probs[j] = _top_p(probs[j], rows[k].top_p)
            u = torch.stack(
                [torch.rand((), generator=rows[k].generator, device=logits.device) for k in sampled]
            )
            cdf = probs.cumsum(dim=-1)  # (S, V)
            picked = torch.searchsorted(cdf, (u.double() * cdf[:, -1])[:, None], right=True)[:, 0]
            tokens[sampled] = picked.clamp(max=logits.shape[-1] - 1)
        for k, r in enumerate(rows):
            tok = int(tokens[k])
            r.out.ids.append(tok)
            r.out.logprobs.append(float(logp[k, tok]))
            if r.top_logprobs:
                values, idx = logp[k].topk(r.top_logprobs)
                r.out.top.append(list(zip(idx.tolist(), values.tolist(), strict=True)))
            if tok in self.eos_ids or (r.stops and self._hit_stop(r)):
                r.done, r.out.finish_reason = True, "stop"
            elif len(r.out.ids) >= r.max_new:
                r.done, r.out.finish_reason = True, "length"
        return tokens

    def _hit_stop(self, r: _Row) -> bool:
        # A stop string of b bytes spans at most b + 2 tokens, so decoding that tail is enough.
        tail = max(len(s.encode()) for s in r.stops) + 2
        text = self.tokenizer.decode(r.out.ids[-tail:], skip_special_tokens=True)
        return any(s in text for s in r.stops)


def _top_p(probs: torch.Tensor, top_p: float) -> torch.Tensor:
    """Zero every token outside the smallest set whose probability reaches `top_p` (nucleus)."""
    sorted_probs, order = probs.sort(descending=True)
    outside = sorted_probs.cumsum(0) - sorted_probs >= top_p  # the top token always stays
    return probs.scatter(0, order[outside], 0.0)


def _resolve(job: _Job, value: int | BaseException) -> None:
    def settle() -> None:
        if job.future.done():
            return
        if isinstance(value, BaseException):
            job.future.set_exception(value)
        else:
            job.future.set_result(value)

    with contextlib.suppress(RuntimeError):  # the caller's event loop is closed: nobody waits
        job.loop.call_soon_threadsafe(settle)
