"""Functional view of a model: flat parameter vector, loss(θ) and curvature products."""

from landscape.engine.curvature import (
    CachedReverse,
    CurvatureOperator,
    EmpiricalFisherOperator,
    ForwardOverReverse,
    GGNOperator,
    HessianOperator,
    HVPStrategy,
    Reverse,
)
from landscape.engine.operators import (
    ChunkSumOperator,
    DenseOperator,
    LinearOperatorBase,
    Operator,
    ScaledOperator,
    SumOperator,
)
from landscape.engine.params import ParamInfo, ParamSpace
from landscape.engine.restrict import RestrictedOperator

__all__ = [
    "CachedReverse",
    "ChunkSumOperator",
    "CurvatureOperator",
    "DenseOperator",
    "EmpiricalFisherOperator",
    "ForwardOverReverse",
    "GGNOperator",
    "HVPStrategy",
    "HessianOperator",
    "LinearOperatorBase",
    "Operator",
    "ParamInfo",
    "ParamSpace",
    "RestrictedOperator",
    "Reverse",
    "ScaledOperator",
    "SumOperator",
]
