"""Synthetic data and spec reference code shared by the tests and the benchmarks.

Installed with the package so that benchmarks import them without the test suite on the path.
"""
