"""Reading a network: :func:`summary` (shapes, parameters, costs, memory, from the shape rules alone) and
the gradients of a class score with respect to the input (:func:`saliency`).
"""

from funcnn.analysis._saliency import class_score_gradient as class_score_gradient
from funcnn.analysis._saliency import saliency as saliency
from funcnn.analysis._summary import Summary as Summary
from funcnn.analysis._summary import SummaryRow as SummaryRow
from funcnn.analysis._summary import summary as summary
