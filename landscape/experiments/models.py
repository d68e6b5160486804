"""The model zoo's former home, kept so that saved checkpoints naming it still load.

Checkpoints saved before the zoo moved to :mod:`landscape.models` record factories such
as ``landscape.experiments.models:digits_cnn``; those names resolve here to the same
functions.
"""

from landscape.models import (
    DigitsResNet,
    TinyTransformer,
    deep_linear,
    digits_cnn,
    digits_resnet,
    linear_model,
    mlp,
    modular_addition,
    tiny_cnn,
    tiny_transformer,
)

__all__ = [
    "DigitsResNet",
    "TinyTransformer",
    "deep_linear",
    "digits_cnn",
    "digits_resnet",
    "linear_model",
    "mlp",
    "modular_addition",
    "tiny_cnn",
    "tiny_transformer",
]
