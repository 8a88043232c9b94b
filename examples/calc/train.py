"""Train the calc agent with LightningRL and measure held-out accuracy before and after.

    python examples/calc/train.py --quick      # a few minutes: 50 test problems, a few steps
    python examples/calc/train.py              # the whole test split before and after, ~25 minutes

Held-out accuracy is the trainer's own validation: greedy rollouts of the same agent, through the
same gateway, on the test split (given as `val_data`), before the first step and after the last.
The training reward curve and both accuracies go to `OUTPUT_DIR/metrics.jsonl` and `curves.png`.
`boltrl train examples/calc/config.yaml` runs the same training from a config file (validating on
the val split instead).
"""

from __future__ import annotations

import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parents[1]))  # `python examples/calc/train.py` from a checkout

import boltrl  # noqa: E402
from examples.calc.agent import agent  # noqa: E402
from examples.common import Mode, parser, train  # noqa: E402

QUICK = Mode(steps=3, test=50, batch_size=8)
FULL = Mode(steps=16, test=None, batch_size=8)


def main(argv: list[str] | None = None) -> int:
    args = parser("calc", "problems", QUICK, FULL, max_tokens=64).parse_args(argv)
    outcome = train(
        "calc",
        HERE,
        agent,
        boltrl.LightningRL(group_size=4, lr=1e-5),
        args,
        QUICK,
        FULL,
        n_runners=16,
        max_batch_size=16,
        temperature=0.7,  # at 1.0 SmolLM2 rarely solves one: groups with no signal
    )
    print(outcome.line("calc", "problems"))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
