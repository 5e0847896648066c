"""Automatic differentiation as graph building: reverse mode (Algorithms 6.5/6.6) and more."""

from graphc.autodiff.check import check_grad
from graphc.autodiff.reverse import backprop, build_grad, grad, prune, vjp

__all__ = ["check_grad", "backprop", "build_grad", "grad", "prune", "vjp"]
