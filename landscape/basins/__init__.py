"""Basins: LLC, basin volume and prior mass, Jacobian rank, compressibility, symmetries, basin counting.

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
from landscape.basins.jacobian_rank import (
    FunctionalDimension,
    JacobianRank,
    SymmetryCount,
    effective_rank,
    functional_dimension,
    jacobian_rank,
)
from landscape.basins.llc import LLCConfig, LLCResult, estimate_llc
from landscape.basins.prior_mass import PriorMassResult, basin_prior_mass, prior_scale
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
    "FunctionalDimension",
    "JacobianRank",
    "LLCConfig",
    "LLCResult",
    "LearningCoefficient",
    "Preconditioner",
    "PriorMassResult",
    "SymmetryCount",
    "VolumeResult",
    "basin_prior_mass",
    "basin_volume",
    "canonicalize",
    "compressibility",
    "count_basins",
    "deep_linear_lambda",
    "diagonal_preconditioner",
    "effective_rank",
    "eigen_preconditioner",
    "estimate_llc",
    "functional_dimension",
    "hutchinson_diagonal",
    "jacobian_rank",
    "loss_barrier",
    "prior_scale",
    "rebalance",
    "reduced_rank_lambda",
    "regular_lambda",
    "rescale_layer_pair",
    "weight_matching",
]
