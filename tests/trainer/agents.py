"""Agents for the trainer tests: plain openai clients pointed at the gateway, as users write them."""

from __future__ import annotations

import openai

import boltrl


@boltrl.rollout
async def brevity(task: dict, llm: boltrl.LLM) -> float:
    """Reward short answers: 1 - completion tokens / max_tokens (a signal a random model can follow)."""
    async with openai.AsyncOpenAI(base_url=llm.base_url, api_key=llm.api_key) as client:
        r = await client.chat.completions.create(
            model=llm.model, messages=[{"role": "user", "content": task["q"]}], **llm.sampling
        )
    assert r.usage is not None
    return 1.0 - r.usage.completion_tokens / int(llm.sampling.get("max_tokens", 16))
