"""The HF backend on the tiny random model: sampling, exact token ids and logprobs, batching, swaps."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
import torch

from boltrl.errors import InvalidInputError
from boltrl.inference.base import BackendError, InferenceBackend
from boltrl.inference.hf import HFBackend

pytestmark = pytest.mark.anyio


def chat(content: str = "What is 2 + 3?", **params: Any) -> dict[str, Any]:
    return {"model": "anything", "messages": [{"role": "user", "content": content}], **params}


def recomputed_logprobs(
    b: HFBackend, prompt: list[int], response: list[int], temperature: float
) -> torch.Tensor:
    """log_softmax(logits / T) of the response tokens from one plain forward pass over prompt+response."""
    ids = torch.tensor([prompt + response])
    with torch.no_grad():
        logits = b.model(input_ids=ids).logits[0, len(prompt) - 1 : -1].float()  # (R, V)
    logp = torch.log_softmax(logits / (temperature or 1.0), dim=-1)
    return logp.gather(1, torch.tensor(response)[:, None])[:, 0]


def test_satisfies_the_protocol(backend: HFBackend) -> None:
    assert isinstance(backend, InferenceBackend)
    assert backend.models() == ["tiny-random"]
    assert backend.template_tools is False  # the ChatML template ignores tools, like SmolLM2's


async def test_greedy_is_deterministic_and_content_is_the_decode(backend: HFBackend) -> None:
    a = await backend.chat(chat(temperature=0, max_tokens=12))
    b = await backend.chat(chat(temperature=0, max_tokens=12))
    assert a.response_ids == b.response_ids and len(a.response_ids) > 0
    content = a.response["choices"][0]["message"]["content"]
    assert backend.tokenizer.decode(a.response_ids, skip_special_tokens=True) == content
    assert a.response["object"] == "chat.completion" and a.response["model"] == "tiny-random"
    assert a.prompt_ids == backend.tokenizer.encode(
        backend.tokenizer.apply_chat_template(
            [{"role": "user", "content": "What is 2 + 3?"}], tokenize=False, add_generation_prompt=True
        ),
        add_special_tokens=False,
    )


async def test_seed_reproduces_sampling(backend: HFBackend) -> None:
    runs = [await backend.chat(chat(temperature=1.0, seed=s, max_tokens=16)) for s in (7, 7, 8)]
    assert runs[0].response_ids == runs[1].response_ids
    assert runs[0].response_ids != runs[2].response_ids


async def test_max_tokens_gives_length(backend: HFBackend) -> None:
    r = await backend.chat(chat(temperature=0, max_completion_tokens=5))
    assert len(r.response_ids) == 5 == len(r.logprobs)
    assert r.response["choices"][0]["finish_reason"] == "length"
    assert r.response["usage"]["completion_tokens"] == 5


async def test_stop_string_cuts_content_and_ends_the_choice(backend: HFBackend) -> None:
    full = await backend.chat(chat(temperature=0, max_tokens=30))
    text = full.response["choices"][0]["message"]["content"]
    stop = text[8:11]
    assert len(stop) == 3 and stop.strip()
    r = await backend.chat(chat(temperature=0, max_tokens=30, stop=[stop, "never-appears"]))
    assert r.response["choices"][0]["message"]["content"] == text[: text.find(stop)]
    assert r.response["choices"][0]["finish_reason"] == "stop"
    # the sampled ids up to and including the stop are kept: they are what the policy produced
    assert r.response_ids == full.response_ids[: len(r.response_ids)]
    assert stop in backend.tokenizer.decode(r.response_ids)


async def test_n_choices(backend: HFBackend) -> None:
    r = await backend.chat(chat(temperature=1.0, seed=1, n=3, max_tokens=8))
    assert [c["index"] for c in r.response["choices"]] == [0, 1, 2]
    assert len(r.choices) == 3 and len({tuple(c.response_ids) for c in r.choices}) > 1
    assert r.response["usage"]["completion_tokens"] == sum(len(c.response_ids) for c in r.choices)


@pytest.mark.parametrize(("temperature", "top_p"), [(0.0, 1.0), (1.0, 1.0), (0.7, 0.9)])
async def test_logprobs_are_exact(backend: HFBackend, temperature: float, top_p: float) -> None:
    r = await backend.chat(chat(temperature=temperature, top_p=top_p, seed=3, n=2, max_tokens=20))
    for choice in r.choices:
        assert len(choice.logprobs) == len(choice.response_ids)
        assert choice.temperature == (temperature or 1.0)
        expected = recomputed_logprobs(backend, r.prompt_ids, choice.response_ids, temperature)
        assert torch.allclose(torch.tensor(choice.logprobs), expected, atol=1e-4)


async def test_openai_logprobs_in_the_response(backend: HFBackend) -> None:
    r = await backend.chat(chat(temperature=0, max_tokens=6, logprobs=True, top_logprobs=3))
    entries = r.response["choices"][0]["logprobs"]["content"]
    assert [e["logprob"] for e in entries] == r.logprobs
    for e in entries:
        tops = [t["logprob"] for t in e["top_logprobs"]]
        assert len(tops) == 3 and tops == sorted(tops, reverse=True)
        assert e["logprob"] == pytest.approx(tops[0])  # greedy picks the most likely token


async def test_concurrent_requests_are_batched_with_identical_greedy_output(backend: HFBackend) -> None:
    bodies = [chat("hi " * (i * 3 + 1) + "what now?", temperature=0, max_tokens=6 + i) for i in range(8)]
    alone = [await backend.chat(b) for b in bodies]
    batch_sizes: list[int] = []
    decode = backend._decode

    def counting(rows: list[Any]) -> None:
        batch_sizes.append(len(rows))
        decode(rows)

    backend._decode = counting  # type: ignore[method-assign]
    try:
        together = await asyncio.gather(*(backend.chat(b) for b in bodies))
    finally:
        del backend._decode
    assert max(batch_sizes) > 1 and sum(batch_sizes) == 8
    assert len({len(r.prompt_ids) for r in together}) > 1  # prompts of different lengths were padded
    assert [r.response_ids for r in together] == [r.response_ids for r in alone]
    for r, a in zip(together, alone, strict=True):
        assert torch.allclose(torch.tensor(r.logprobs), torch.tensor(a.logprobs), atol=1e-4)


async def test_load_weights_changes_outputs_and_version(make_backend: Any) -> None:
    b = make_backend()
    before = await b.chat(chat(temperature=0, max_tokens=10))
    assert before.weights_version == 0
    torch.manual_seed(1)
    new = {
        k: v + 0.5 * torch.randn_like(v) for k, v in b.model.state_dict().items() if k.endswith("proj.weight")
    }
    await asyncio.to_thread(b.load_weights, new, 7)
    after = await b.chat(chat(temperature=0, max_tokens=10))
    assert (b.weights_version, after.weights_version) == (7, 7)
    assert after.response["system_fingerprint"] == "boltrl-w7"
    assert after.response_ids != before.response_ids
    b.load_weights({})
    assert b.weights_version == 8
    with pytest.raises(InvalidInputError, match="unknown parameter"):
        b.load_weights({"no.such.weight": torch.zeros(1)})


async def test_tools_are_rendered_into_the_prompt_and_history_converted(backend: HFBackend) -> None:
    tools = [{"type": "function", "function": {"name": "calculator", "parameters": {"type": "object"}}}]
    call = {"id": "call_1", "type": "function", "function": {"name": "calculator", "arguments": "{}"}}
    messages = [
        {"role": "user", "content": "2+3?"},
        {"role": "assistant", "content": None, "tool_calls": [call]},
        {"role": "tool", "tool_call_id": "call_1", "content": "5"},
    ]
    r = await backend.chat({"messages": messages, "tools": tools, "temperature": 0, "max_tokens": 4})
    prompt = backend.tokenizer.decode(r.prompt_ids)
    assert '"name": "calculator"' in prompt and "<tool_response>\n5\n</tool_response>" in prompt
    assert prompt.endswith("<|im_start|>assistant\n")


async def test_completions_take_text_or_token_ids(backend: HFBackend) -> None:
    text = await backend.complete(
        {"prompt": "The answer is", "temperature": 0, "max_tokens": 5, "logprobs": 1}
    )
    assert text.response["object"] == "text_completion"
    assert text.prompt_ids == backend.tokenizer.encode("The answer is")
    choice = text.response["choices"][0]
    assert choice["text"] == backend.tokenizer.decode(text.response_ids, skip_special_tokens=True)
    assert choice["logprobs"]["token_logprobs"] == text.logprobs
    ids = await backend.complete({"prompt": text.prompt_ids, "temperature": 0, "max_tokens": 5})
    assert ids.response_ids == text.response_ids
    expected = recomputed_logprobs(backend, text.prompt_ids, text.response_ids, 0.0)
    assert torch.allclose(torch.tensor(text.logprobs), expected, atol=1e-4)


@pytest.mark.parametrize(
    ("body", "param"),
    [
        ({"messages": []}, "messages"),
        ({"messages": [{"content": "no role"}]}, "messages[0]"),
        ({"messages": [{"role": "user", "content": "x"}], "tools": "nope"}, "tools"),
        ({"messages": [{"role": "user", "content": [{"type": "image_url"}]}]}, "messages"),
    ],
)
async def test_bad_chat_requests_are_400s(backend: HFBackend, body: dict[str, Any], param: str) -> None:
    with pytest.raises(BackendError) as e:
        await backend.chat(body)
    assert (e.value.status, e.value.param) == (400, param)


async def test_prompt_longer_than_the_context_is_a_400(backend: HFBackend) -> None:
    with pytest.raises(BackendError) as e:
        await backend.complete({"prompt": list(range(100)) * 21})
    assert (e.value.status, e.value.code) == (400, "context_length_exceeded")
    with pytest.raises(BackendError, match="one request per prompt"):
        await backend.complete({"prompt": ["a", "b"]})


async def test_max_tokens_is_capped_by_the_context(backend: HFBackend) -> None:
    r = await backend.complete(
        {"prompt": [5] * (backend.context_length - 3), "temperature": 0, "max_tokens": 50}
    )
    assert len(r.response_ids) <= 3


async def test_closed_backend_refuses_with_503(make_backend: Any) -> None:
    b = make_backend()
    await b.chat(chat(temperature=0, max_tokens=2))
    await b.close()
    with pytest.raises(BackendError) as e:
        await b.chat(chat(max_tokens=2))
    assert e.value.status == 503


def test_sampling_follows_the_distribution_and_top_p(backend: HFBackend) -> None:
    from boltrl.inference.hf import _Row

    logits = torch.log(torch.tensor([[0.1, 0.2, 0.3, 0.4]]))

    def draws(top_p: float, n: int = 4000) -> torch.Tensor:
        row = _Row([0], 1.0, top_p, 1 << 30, (), 0, torch.Generator().manual_seed(0))
        counts = torch.zeros(4)
        for _ in range(n):
            counts[int(backend._sample(logits, [row])[0])] += 1
        return counts / n

    assert torch.allclose(draws(1.0), torch.tensor([0.1, 0.2, 0.3, 0.4]), atol=0.03)
    nucleus = draws(0.5, 1000)  # 0.4 + 0.3 reach 0.5: only the two most likely tokens remain
    assert nucleus[:2].sum() == 0 and torch.allclose(nucleus[2:], torch.tensor([3 / 7, 4 / 7]), atol=0.05)
