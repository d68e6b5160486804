"""Hessian spectra: Lanczos eigenpairs, trace estimators, spectral density, dense reference.

Every estimator takes an operator (``landscape.engine.Operator``), never a model; the dense
reference takes a ``ParamSpace``.
"""

from landscape.hessian.dense import dense_hessian, exact_spectrum
from landscape.hessian.eigenpairs import bottom_eigenpairs, top_eigenpairs
from landscape.hessian.frobenius import frobenius_norm
from landscape.hessian.hutchinson import hutchinson_trace
from landscape.hessian.hutchpp import hutchpp_trace
from landscape.hessian.slq import slq_density

__all__ = [
    "bottom_eigenpairs",
    "dense_hessian",
    "exact_spectrum",
    "frobenius_norm",
    "hutchinson_trace",
    "hutchpp_trace",
    "slq_density",
    "top_eigenpairs",
]
