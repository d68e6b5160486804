"""Hessian spectra: Lanczos eigenpairs, trace estimators, spectral density, dense reference."""
