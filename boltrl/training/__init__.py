"""Policy training: the HF model and its update (`policy`), micro-batching (`batching`), checkpoints.

Imports torch; the server, store, runner and agent API never import this package.
"""

from boltrl.training.batching import Batch, Sample, collate, pack
from boltrl.training.checkpoint import (
    CheckpointInfo,
    export_pretrained,
    latest_checkpoint,
    list_checkpoints,
    load_checkpoint,
    save_checkpoint,
)
from boltrl.training.policy import LoraConfig, LossFn, Policy, PolicyConfig

__all__ = [
    "Batch",
    "CheckpointInfo",
    "LoraConfig",
    "LossFn",
    "Policy",
    "PolicyConfig",
    "Sample",
    "collate",
    "export_pretrained",
    "latest_checkpoint",
    "list_checkpoints",
    "load_checkpoint",
    "pack",
    "save_checkpoint",
]
