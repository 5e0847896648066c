"""Automatic differentiation as graph building: reverse mode (Algorithms 6.5/6.6) and more."""

from graphc.autodiff.batching import vmap
from graphc.autodiff.check import check_grad
from graphc.autodiff.control import cond, fori_loop, scan, while_loop
from graphc.autodiff.custom_rules import CustomJVP, CustomVJP, NoForwardRule, custom_jvp, custom_vjp
from graphc.autodiff.forward import jvp, push_tangents
from graphc.autodiff.implicit import fixed_point, root
from graphc.autodiff.rematerialize import Remat, remat
from graphc.autodiff.reverse import backprop, build_grad, grad, prune, vjp
from graphc.autodiff.second_order import hessian, hvp, jacobian

__all__ = ["check_grad", "backprop", "build_grad", "grad", "prune", "vjp", "jvp",
           "push_tangents", "hvp", "jacobian", "hessian", "Remat", "remat", "vmap",
           "CustomVJP", "CustomJVP", "NoForwardRule", "custom_vjp", "custom_jvp",
           "fixed_point", "root", "scan", "fori_loop", "while_loop", "cond"]
