"""funcnn: a functional neural-net library on NumPy with explicit, hand-written VJPs.

Every layer is a pure function ``layer(params, x) -> (y, vjp)`` with ``vjp(dy) -> (dparams, dx)``.
"""

from funcnn import nets as nets
from funcnn import optim as optim
from funcnn.affine import affine as affine
from funcnn.affine import dense as dense
from funcnn.combinators import chain as chain
from funcnn.combinators import sandwich as sandwich
from funcnn.conv import conv as conv
from funcnn.conv import conv_naive as conv_naive
from funcnn.gradcheck import LeafCheck as LeafCheck
from funcnn.gradcheck import NonDifferentiableError as NonDifferentiableError
from funcnn.gradcheck import NonDifferentiableWarning as NonDifferentiableWarning
from funcnn.gradcheck import VJPCheckError as VJPCheckError
from funcnn.gradcheck import VJPReport as VJPReport
from funcnn.gradcheck import check_vjp as check_vjp
from funcnn.init import init_params as init_params
from funcnn.layer import Layer as Layer
from funcnn.layer import layer as layer
from funcnn.losses import loss_layer as loss_layer
from funcnn.losses import softmax_loss as softmax_loss
from funcnn.losses import svm_loss as svm_loss
from funcnn.numerical import numerical_gradient as numerical_gradient
from funcnn.numerical import numerical_gradient_array as numerical_gradient_array
from funcnn.numerical import rel_error as rel_error
from funcnn.pool import max_pool as max_pool
from funcnn.pool import max_pool_naive as max_pool_naive
from funcnn.relu import relu as relu
from funcnn.sandwiches import affine_relu as affine_relu
from funcnn.sandwiches import conv_relu as conv_relu
from funcnn.sandwiches import conv_relu_pool as conv_relu_pool
from funcnn.sandwiches import dense_relu as dense_relu
from funcnn.train import FitResult as FitResult
from funcnn.train import History as History
from funcnn.train import accuracy as accuracy
from funcnn.train import fit as fit
from funcnn.train import l2_penalty as l2_penalty
from funcnn.train import predict as predict
from funcnn.train import value_and_grad as value_and_grad
from funcnn.train import with_l2 as with_l2

__version__ = "0.1.0"
