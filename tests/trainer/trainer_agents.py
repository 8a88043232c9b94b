"""Agents for the trainer tests: plain openai clients pointed at the gateway, as users write them."""

from __future__ import annotations

import openai

import boltrl


@boltrl.rollout
async def brevity(task: dict, llm: boltrl.LLM) -> float:
    """Reward short answers: 1 - characters / (8 x max_tokens). Characters rather than tokens, so that
    even a random model that never stops early gets rewards that differ within a group."""
    async with openai.AsyncOpenAI(base_url=llm.base_url, api_key=llm.api_key) as client:
        r = await client.chat.completions.create(
            model=llm.model, messages=[{"role": "user", "content": task["q"]}], **llm.sampling
        )
    text = r.choices[0].message.content or ""
    return max(0.0, 1.0 - len(text) / (8 * int(llm.sampling.get("max_tokens", 16))))
