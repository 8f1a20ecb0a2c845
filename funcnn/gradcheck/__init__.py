"""``check_vjp``: finite-difference any layer or composition and say which leaf, and which element, is wrong.

The steps live in private modules, in the order check_vjp runs them: ``_structure`` (the vjp's
result mirrors (params, x), purity, repeatability), ``_probe`` (central differences as one leaf
moves), ``_compare`` (analytic against numeric, leaf by leaf, with the tolerances), ``_kinks``
(a disagreement that is a kink, not a wrong gradient); ``_report`` holds the results.
"""

from funcnn.gradcheck._check_vjp import PROBES as PROBES
from funcnn.gradcheck._check_vjp import check_vjp as check_vjp
from funcnn.gradcheck._compare import RTOL as RTOL
from funcnn.gradcheck._compare import STEP as STEP
from funcnn.gradcheck._kinks import NonDifferentiableError as NonDifferentiableError
from funcnn.gradcheck._kinks import NonDifferentiableWarning as NonDifferentiableWarning
from funcnn.gradcheck._numerical import numerical_gradient as numerical_gradient
from funcnn.gradcheck._numerical import numerical_gradient_array as numerical_gradient_array
from funcnn.gradcheck._numerical import rel_error as rel_error
from funcnn.gradcheck._report import LeafCheck as LeafCheck
from funcnn.gradcheck._report import VJPCheckError as VJPCheckError
from funcnn.gradcheck._report import VJPReport as VJPReport
from funcnn.gradcheck._step_sweep import StepSweep as StepSweep
from funcnn.gradcheck._step_sweep import step_sweep as step_sweep

__all__ = [
    "PROBES",
    "RTOL",
    "STEP",
    "LeafCheck",
    "NonDifferentiableError",
    "NonDifferentiableWarning",
    "StepSweep",
    "VJPCheckError",
    "VJPReport",
    "check_vjp",
    "numerical_gradient",
    "numerical_gradient_array",
    "rel_error",
    "step_sweep",
]
