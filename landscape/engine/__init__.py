"""Functional view of a model: flat parameter vector, loss(θ) and curvature products."""

from landscape.engine.curvature import CurvatureOperator, DenseOperator, Operator
from landscape.engine.params import ParamInfo, ParamSpace
from landscape.engine.restrict import RestrictedOperator

__all__ = [
    "CurvatureOperator",
    "DenseOperator",
    "Operator",
    "ParamInfo",
    "ParamSpace",
    "RestrictedOperator",
]
