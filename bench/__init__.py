"""Benchmarks against the anchors (PyHessian, loss-landscapes, plain loops); not installed.

Run the whole suite with ``python -m bench`` (``--quick`` for a smoke run).
"""
