"""The layers: pure functions ``layer(params, x) -> (y, vjp)``, with ``vjp(dy) -> (dparams, dx)``.

Each private module holds one concern (affine, conv, pools, activations, norms, batch norm,
dropout); this package re-exports the public names.
"""

from funcnn.layers._activations import leaky_relu as leaky_relu
from funcnn.layers._activations import relu as relu
from funcnn.layers._activations import sigmoid as sigmoid
from funcnn.layers._activations import tanh as tanh
from funcnn.layers._affine import affine as affine
from funcnn.layers._affine import dense as dense
from funcnn.layers._batch_norm import batch_norm as batch_norm
from funcnn.layers._batch_norm import spatial_batch_norm as spatial_batch_norm
from funcnn.layers._conv import conv as conv
from funcnn.layers._conv import conv_naive as conv_naive
from funcnn.layers._dropout import dropout as dropout
from funcnn.layers._norms import group_norm as group_norm
from funcnn.layers._norms import layer_norm as layer_norm
from funcnn.layers._pool import avg_pool as avg_pool
from funcnn.layers._pool import global_avg_pool as global_avg_pool
from funcnn.layers._pool import max_pool as max_pool
from funcnn.layers._pool import max_pool_naive as max_pool_naive
