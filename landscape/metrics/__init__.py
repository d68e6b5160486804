"""Flatness and sharpness measures, with the reparameterization question answered.

Rescaling one layer of a ReLU network by α and the next by 1/α leaves the function
unchanged but changes λmax and the trace arbitrarily (Dinh et al. 2017). Every report
therefore says whether the point was *canonicalized* (replaced by the minimum-norm
representative of its rescaling orbit, :func:`canonicalize`) and which values are
*invariant* to those rescalings. ``compute_metrics`` canonicalizes by default whenever
the architecture is an analysable ReLU/linear ``nn.Sequential``.

Every metric is a :class:`~landscape.metrics.registry.MetricSpec` in
:data:`~landscape.metrics.registry.REGISTRY`: its function, what it needs, when it is
invariant (always; when canonicalized; adaptive sharpness when η = 0; average sharpness
when the noise scale is ``element``) and a one-line formula. The table in
``docs/metrics.md`` is generated from it (:func:`~landscape.metrics.registry.markdown_table`).
The options are the fields of :class:`~landscape.metrics.options.MetricOptions`.

Estimates that are stochastic (trace, Frobenius, average sharpness, PAC-Bayes σ, relative
flatness by Hutch++) are :class:`landscape.results.Estimate` with a standard error.

Data-free weight spectra (ESD power-law α, Marchenko–Pastur spikes, correlation traps,
stable rank; WeightWatcher style) are in :mod:`landscape.metrics.weight_spectra`.

Example:
    >>> import torch
    >>> from landscape.engine import ParamSpace
    >>> from landscape.io import ModelBundle, load_data
    >>> from landscape.models import mlp
    >>> _ = torch.manual_seed(0)
    >>> b = ModelBundle.from_module(mlp(64, 8, 10), load_data("digits", max_samples=64))
    >>> r = compute_metrics(ParamSpace(b), names=["loss", "trace"])
    >>> sorted(r.to_dict()["invariant"])
    ['loss', 'trace']
"""

from landscape.metrics.canonicalize import CanonicalInfo, analyse, canonicalize
from landscape.metrics.compute import METRICS, MetricsReport, compute_metrics
from landscape.metrics.fisher_rao import fisher_rao_norm
from landscape.metrics.options import DEFAULT_OPTIONS, MetricOptions
from landscape.metrics.pac_bayes import PacBayesResult, pac_bayes_bound, pac_bayes_sigma
from landscape.metrics.registry import REGISTRY, MetricSpec, markdown_table
from landscape.metrics.relative_flatness import feature_layer, relative_flatness
from landscape.metrics.sharpness import (
    SharpnessResult,
    adaptive_sharpness,
    average_sharpness,
    eps_sharpness,
)
from landscape.metrics.spectral import effective_rank, frobenius, lambda_max, trace
from landscape.metrics.weight_spectra import (
    LayerSpectrum,
    MarchenkoPasturFit,
    PowerLawFit,
    WeightSpectra,
    powerlaw_fit,
    weight_spectra,
)

__all__ = [
    "DEFAULT_OPTIONS",
    "METRICS",
    "REGISTRY",
    "CanonicalInfo",
    "LayerSpectrum",
    "MarchenkoPasturFit",
    "MetricOptions",
    "MetricSpec",
    "MetricsReport",
    "PacBayesResult",
    "PowerLawFit",
    "SharpnessResult",
    "WeightSpectra",
    "adaptive_sharpness",
    "analyse",
    "average_sharpness",
    "canonicalize",
    "compute_metrics",
    "effective_rank",
    "eps_sharpness",
    "feature_layer",
    "fisher_rao_norm",
    "frobenius",
    "lambda_max",
    "markdown_table",
    "pac_bayes_bound",
    "pac_bayes_sigma",
    "powerlaw_fit",
    "relative_flatness",
    "trace",
    "weight_spectra",
]
