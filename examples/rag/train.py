"""Train the rag agent with LightningRL; measure the held-out reward (0.9 x F1 + 0.1 x format) before
and after.

    python examples/rag/train.py --quick      # a few minutes: 50 test questions, a few steps
    python examples/rag/train.py              # the whole test split before and after

Held-out score is the trainer's own validation: greedy rollouts of the same agent, through the same
gateway, on the test split (given as `val_data`), before the first step and after the last: the mean
of the paper's MuSiQue reward, 0.9 x token F1 of the answer + 0.1 x format. The training reward
curve and both scores go to `OUTPUT_DIR/metrics.jsonl` and `curves.png`.
`boltrl train examples/rag/config.yaml` runs the same training from a config file (validating on the
val split instead).
"""

from __future__ import annotations

import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parents[1]))  # `python examples/rag/train.py` from a checkout

import boltrl  # noqa: E402
from examples.common import Mode, parser, print_breakdown, train  # noqa: E402
from examples.rag.agent import agent  # noqa: E402

# Each model call reads a ~550-token prompt (the tool instructions and the worked examples): four
# times the calc example's, so fewer steps than calc's (8 steps of 8 questions: about 35 minutes of training).
QUICK = Mode(steps=3, test=50, batch_size=4)
# 8 questions a step (not 4): with 4, each update saw one or two groups with signal and swung the
# whole policy to one question type (README, "Measured").
FULL = Mode(steps=8, test=None, batch_size=8)


def main(argv: list[str] | None = None) -> int:
    args = parser("rag", "questions", QUICK, FULL, max_tokens=48).parse_args(argv)
    outcome = train(
        "rag",
        HERE,
        agent,
        boltrl.LightningRL(group_size=4, lr=1e-5),
        args,
        QUICK,
        FULL,
        n_runners=16,
        max_batch_size=16,
        temperature=0.7,
        # 200 greedy test rollouts of several calls each take 10-15 minutes on 2 cores: the default
        # 900 s would cancel the last ones, and a cancelled rollout scores 0
        step_timeout_s=3600,
    )
    print(outcome.line("rag", "questions", score="reward"))
    print_breakdown(outcome.output_dir, "type")  # the test score by question type
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
