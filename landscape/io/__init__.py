"""Loading checkpoints, data and losses; run directories and result files."""

from landscape.io.checkpoint import load_model
from landscape.io.data import DataSource, load_data
from landscape.io.losses import LossSpec, resolve_loss
from landscape.io.model_bundle import ModelBundle
from landscape.io.save import load_bundle, save

__all__ = [
    "DataSource",
    "LossSpec",
    "ModelBundle",
    "load_bundle",
    "load_data",
    "load_model",
    "resolve_loss",
    "save",
]
