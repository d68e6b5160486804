"""Basin measures: LLC, prior mass, P(f), functional dimension, symmetries, basin counts.

Also compressibility, and the Lebesgue volume where it is finite.

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
from landscape.basins.connect import (
    Connectivity,
    CurveConfig,
    PathResult,
    linear_path,
    mode_connectivity,
    train_curve,
)
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
from landscape.basins.llc_tuning import TuningReport, tune_llc
from landscape.basins.nngp import EPResult, ep_log_orthant, nngp_kernel
from landscape.basins.prior_function import (
    InitSampler,
    PriorProbability,
    lempel_ziv_complexity,
    prior_probability,
    sample_functions,
)
from landscape.basins.prior_mass import PriorMassResult, basin_prior_mass, prior_scale
from landscape.basins.symmetry import (
    Alignment,
    PermutationSpec,
    canonicalize,
    match_permutations,
    permutation_spec,
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
    "Connectivity",
    "CurveConfig",
    "PathResult",
    "PermutationSpec",
    "FunctionalDimension",
    "EPResult",
    "InitSampler",
    "JacobianRank",
    "LLCConfig",
    "LLCResult",
    "TuningReport",
    "LearningCoefficient",
    "Preconditioner",
    "PriorMassResult",
    "SymmetryCount",
    "PriorProbability",
    "VolumeResult",
    "basin_prior_mass",
    "basin_volume",
    "canonicalize",
    "compressibility",
    "mode_connectivity",
    "linear_path",
    "match_permutations",
    "permutation_spec",
    "train_curve",
    "count_basins",
    "deep_linear_lambda",
    "diagonal_preconditioner",
    "effective_rank",
    "eigen_preconditioner",
    "ep_log_orthant",
    "estimate_llc",
    "functional_dimension",
    "tune_llc",
    "hutchinson_diagonal",
    "jacobian_rank",
    "lempel_ziv_complexity",
    "loss_barrier",
    "prior_scale",
    "nngp_kernel",
    "prior_probability",
    "rebalance",
    "reduced_rank_lambda",
    "regular_lambda",
    "rescale_layer_pair",
    "sample_functions",
    "weight_matching",
]
