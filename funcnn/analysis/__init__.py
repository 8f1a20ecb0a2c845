"""Reading a network: :func:`summary` (shapes, parameters, costs, memory, from the shape rules alone) and
the gradients of a class score with respect to the input (:func:`saliency`). A layer's cost comes from the
rule of its op in :data:`COST_RULES`; a new op adds its rule with ``@cost_rule(op)``.
"""

from funcnn.analysis import _attention  # noqa: F401  # registers the attention layers' cost rules
from funcnn.analysis._costs import COST_RULES as COST_RULES
from funcnn.analysis._costs import Cost as Cost
from funcnn.analysis._costs import cost_rule as cost_rule
from funcnn.analysis._saliency import class_score_gradient as class_score_gradient
from funcnn.analysis._saliency import saliency as saliency
from funcnn.analysis._summary import Summary as Summary
from funcnn.analysis._summary import SummaryRow as SummaryRow
from funcnn.analysis._summary import summary as summary
