"""Hessian collection, GPTQ / round-to-nearest, LQER, and the golf.qmodel file format.

Modules are imported one by one (no re-exports here), so `hessian_calibrate`, which never runs
an eval, does not pull golf.eval in through this package.
"""
