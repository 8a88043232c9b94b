"""Where training metrics go: one JSON line per step, a PNG of the curves, optionally TensorBoard.

Metric keys are namespaced (`rollout/reward_mean`, `train/pg_loss`, `val/reward_mean`, ...). The
JSONL file is appended and flushed every step, so a crash keeps every finished step and a resumed run
continues the same file.
"""

from __future__ import annotations

import json
import logging
import math
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)

PLOTTED = ("rollout/reward_mean", "val/reward_mean", "train/loss", "train/pg_loss", "train/approx_kl")


class MetricsLog:
    def __init__(self, output_dir: str | Path, *, tensorboard: bool = False) -> None:
        self.dir = Path(output_dir)
        self.dir.mkdir(parents=True, exist_ok=True)
        self.path = self.dir / "metrics.jsonl"
        self.history: list[dict[str, Any]] = read_history(self.path)
        self._tb: Any = None
        if tensorboard:
            try:
                from torch.utils.tensorboard import SummaryWriter

                self._tb = SummaryWriter(str(self.dir / "tensorboard"))
            except ImportError:
                log.warning(
                    "TensorBoard is not installed: pip install tensorboard (metrics still go to JSONL)"
                )

    def log(self, row: dict[str, Any]) -> None:
        clean = {k: _plain(v) for k, v in row.items()}
        self.history.append(clean)
        with self.path.open("a") as f:
            f.write(json.dumps(clean) + "\n")
        if self._tb is not None:
            step = int(clean.get("step", len(self.history)))
            for k, v in clean.items():
                if isinstance(v, int | float) and k != "step":
                    self._tb.add_scalar(k, v, step)
            self._tb.flush()

    def plot(self, path: str | Path | None = None) -> Path | None:
        """Draw the curves that exist to a PNG (default `output_dir/curves.png`); None without matplotlib."""
        try:
            import matplotlib

            matplotlib.use("Agg")
            import matplotlib.pyplot as plt
        except ImportError:
            log.warning("matplotlib is not installed: no PNG of the curves (pip install 'boltrl[train]')")
            return None
        keys = [k for k in PLOTTED if any(k in row for row in self.history)]
        if not keys:
            return None
        out = Path(path) if path else self.dir / "curves.png"
        fig, axes = plt.subplots(len(keys), 1, figsize=(7, 2.2 * len(keys)), sharex=True, squeeze=False)
        for ax, key in zip(axes[:, 0], keys, strict=True):
            points = [(r["step"], r[key]) for r in self.history if key in r and _finite(r[key])]
            if points:
                xs, ys = zip(*points, strict=True)
                ax.plot(xs, ys, marker="o" if len(points) < 30 else None, markersize=3)
            ax.set_ylabel(key, fontsize=8)
            ax.grid(alpha=0.3)
        axes[-1, 0].set_xlabel("step")
        fig.tight_layout()
        fig.savefig(out, dpi=110)
        plt.close(fig)
        return out

    def close(self) -> None:
        if self._tb is not None:
            self._tb.close()


def read_history(path: str | Path) -> list[dict[str, Any]]:
    """The rows of a metrics.jsonl, skipping a torn last line left by a crash."""
    p = Path(path)
    if not p.exists():
        return []
    rows = []
    for line in p.read_text().splitlines():
        try:
            rows.append(json.loads(line))
        except json.JSONDecodeError:
            log.warning("skipping a torn line in %s", p)
    return rows


def _finite(v: Any) -> bool:
    return isinstance(v, int | float) and math.isfinite(v)


def _plain(v: Any) -> Any:
    if hasattr(v, "item"):  # tensors and numpy scalars
        v = v.item()
    if isinstance(v, float) and not math.isfinite(v):
        return None
    return v
