"""Flatness and sharpness measures, with the reparameterization question answered.

Rescaling one layer of a ReLU network by α and the next by 1/α leaves the function
unchanged but changes λmax and the trace arbitrarily (Dinh et al. 2017). Every report
therefore says whether the point was *canonicalized* (replaced by the minimum-norm
representative of its rescaling orbit, :func:`canonicalize`) and which values are
*invariant* to those rescalings. ``compute_metrics`` canonicalizes by default whenever
the architecture is an analysable ReLU/linear ``nn.Sequential``.

=====================  ==========================================================  ==========================================  =============================
name                   formula                                                     reference                                   invariant to ReLU rescaling
=====================  ==========================================================  ==========================================  =============================
loss, accuracy         mean training loss / accuracy at θ                          —                                           yes (function only)
generalization_gap     L_test(θ) − L_train(θ) (also test_loss, test_accuracy)      —                                           yes
lambda_max             λmax(∇²L(θ)), Lanczos                                       Keskar et al. 2017                          no; yes when canonicalized
trace                  tr ∇²L(θ), Hutch++ ± stderr                                 Meyer et al. 2021; Yao et al. 2020          no; yes when canonicalized
frobenius              ‖∇²L(θ)‖_F = sqrt(E‖Hz‖²) ± stderr                          Hutchinson 1989                             no; yes when canonicalized
effective_rank         exp(−Σ p_i log p_i), p_i = λ_i⁺/Σλ⁺ (exact or top-k)        Roy & Vetterli 2007                         no; yes when canonicalized
eps_sharpness          max_{‖δ‖₂≤ε} L(θ+δ) − L(θ) (= ε²λmax/2 on a quadratic)      Keskar et al. 2017; Foret et al. 2021       no; yes when canonicalized
adaptive_sharpness     max_{‖δ⊘(|θ|+η)‖₂≤ρ} L(θ+δ) − L(θ)                          Kwon et al. 2021; Andriushchenko et al. 23  yes (η = 0)
average_sharpness      E_z[L(θ+σ c⊙z)] − L(θ), z~N(0,I) (= σ² tr H/2 quadratic)    Neyshabur et al. 2017; Andriushchenko 2023  c=|θ|: yes; else when canon.
pac_bayes_sigma        σ' = max{σ : E_u[L(θ+u)] − L(θ) ≤ 0.1}, u~N(0,σ²I)          Jiang et al. 2019                           no; yes when canonicalized
pac_bayes_bound        ‖θ‖²/(4σ'²) + log(m/σ') + 10                                Jiang et al. 2019 (pacbayes.orig)           no; yes when canonicalized
fisher_rao_norm        sqrt(θᵀFθ) = sqrt(E⟨∂ℓ/∂f, Jθ⟩²) = (L+1)·sqrt(E⟨∂ℓ/∂f,f⟩²)   Liang et al. 2019                           yes
relative_flatness      Σ_{s,s'} ⟨w_s, w_s'⟩ Tr(H_{s,s'}) for the last Linear W     Petzka et al. 2021                          layer-wise only; yes canon.
=====================  ==========================================================  ==========================================  =============================

Estimates that are stochastic (trace, Frobenius, average sharpness, PAC-Bayes σ, relative
flatness by Hutch++) are :class:`landscape.results.Estimate` with a standard error.
The same table, with notes, is in ``docs/metrics.md``.

Data-free weight spectra (ESD power-law α, Marchenko–Pastur spikes, correlation traps,
stable rank; WeightWatcher style) are in :mod:`landscape.metrics.weight_spectra`.

Example:
    >>> import torch
    >>> from landscape.engine import ParamSpace
    >>> from landscape.io import ModelBundle, load_data
    >>> from landscape.experiments.models import mlp
    >>> _ = torch.manual_seed(0)
    >>> b = ModelBundle.from_module(mlp(64, 8, 10), load_data("digits", max_samples=64))
    >>> r = compute_metrics(ParamSpace(b), names=["loss", "trace"])
    >>> sorted(r.to_dict()["invariant"])
    ['loss', 'trace']
"""

from landscape.metrics.canonicalize import CanonicalInfo, analyse, canonicalize
from landscape.metrics.fisher_rao import fisher_rao_norm
from landscape.metrics.pac_bayes import PacBayesResult, pac_bayes_bound, pac_bayes_sigma
from landscape.metrics.relative_flatness import feature_layer, relative_flatness
from landscape.metrics.report import DEFAULT_OPTIONS, METRICS, MetricsReport, compute_metrics
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
    "CanonicalInfo",
    "LayerSpectrum",
    "MarchenkoPasturFit",
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
    "pac_bayes_bound",
    "pac_bayes_sigma",
    "powerlaw_fit",
    "relative_flatness",
    "trace",
    "weight_spectra",
]
