"""A small agent for the quickstart: it solves arithmetic with a "calculator" and scores itself.

No model yet: it guesses with a little noise so rewards differ between rollouts of one task, and it
fails now and then so retries show up. Replace the body with your framework's agent; the runner,
tracing and rewards stay as they are.
"""

from __future__ import annotations

import asyncio
import random

import boltrl


@boltrl.rollout
async def agent(task: dict, llm: boltrl.LLM) -> float:
    expression = task["expression"]
    boltrl.emit_event("calculator.call", expression=expression)
    await asyncio.sleep(random.uniform(0.05, 0.2))  # the "tool" takes a moment
    if random.random() < 0.1:
        raise RuntimeError("calculator timed out")  # the runner retries the rollout
    answer = eval(expression, {"__builtins__": {}})  # trusted demo input only
    guess = answer + random.choice([0, 0, 0, 1, -1])
    boltrl.emit_reward(1.0 if guess == answer else 0.0, name="correct")
    return 1.0 if guess == answer else 0.0
