"""Basins: LLC, basin volume, Jacobian rank, compressibility, symmetries, basin counting.

Every measure works on a :class:`landscape.engine.ParamSpace` (so on any checkpoint that
``landscape scan`` accepts) and returns a frozen dataclass with ``to_dict``.
"""

from landscape.basins.aoyagi import (
    LearningCoefficient,
    deep_linear_lambda,
    reduced_rank_lambda,
    regular_lambda,
)
from landscape.basins.compress import Compressibility, compressibility
from landscape.basins.counting import Barrier, BasinCount, count_basins, loss_barrier
from landscape.basins.jacobian_rank import JacobianRank, effective_rank, jacobian_rank
from landscape.basins.llc import LLCConfig, LLCResult, estimate_llc
from landscape.basins.llc_tuning import TuningReport, tune_llc
from landscape.basins.symmetry import (
    Alignment,
    canonicalize,
    rebalance,
    rescale_layer_pair,
    weight_matching,
)
from landscape.basins.volume import (
    Preconditioner,
    VolumeResult,
    basin_volume,
    diagonal_preconditioner,
    eigen_preconditioner,
    hutchinson_diagonal,
)

__all__ = [
    "Alignment",
    "Barrier",
    "BasinCount",
    "Compressibility",
    "JacobianRank",
    "LLCConfig",
    "LLCResult",
    "TuningReport",
    "LearningCoefficient",
    "Preconditioner",
    "VolumeResult",
    "basin_volume",
    "canonicalize",
    "compressibility",
    "count_basins",
    "deep_linear_lambda",
    "diagonal_preconditioner",
    "effective_rank",
    "eigen_preconditioner",
    "estimate_llc",
    "tune_llc",
    "hutchinson_diagonal",
    "jacobian_rank",
    "loss_barrier",
    "rebalance",
    "reduced_rank_lambda",
    "regular_lambda",
    "rescale_layer_pair",
    "weight_matching",
]
