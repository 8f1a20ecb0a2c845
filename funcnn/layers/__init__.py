"""The layers: pure functions ``layer(params, x) -> (y, vjp)``, with ``vjp(dy) -> (dparams, dx)``.

Each private module holds one concern (affine, conv, pools, activations, norms, batch norm,
dropout, recurrent, embedding, temporal, scan, attention, positional encoding, temporal layer norm,
transformer layers), with the combinators that make networks layers, the
sandwiches built from them and the initialization of params and state from an input shape; this
package re-exports the public names.
"""

from funcnn.layers._activations import leaky_relu as leaky_relu
from funcnn.layers._activations import relu as relu
from funcnn.layers._activations import sigmoid as sigmoid
from funcnn.layers._activations import tanh as tanh
from funcnn.layers._affine import affine as affine
from funcnn.layers._affine import dense as dense
from funcnn.layers._attention import causal_mask as causal_mask
from funcnn.layers._attention import multi_head_attention as multi_head_attention
from funcnn.layers._attention import self_attention as self_attention
from funcnn.layers._batch_norm import batch_norm as batch_norm
from funcnn.layers._batch_norm import spatial_batch_norm as spatial_batch_norm
from funcnn.layers._combinators import chain as chain
from funcnn.layers._combinators import children_parts as children_parts
from funcnn.layers._combinators import fan_out as fan_out
from funcnn.layers._combinators import identity as identity
from funcnn.layers._combinators import pool_before_relu as pool_before_relu
from funcnn.layers._combinators import pull_back_last as pull_back_last
from funcnn.layers._combinators import remat as remat
from funcnn.layers._combinators import remat_chain as remat_chain
from funcnn.layers._combinators import residual as residual
from funcnn.layers._combinators import sandwich as sandwich
from funcnn.layers._conv import ConvParam as ConvParam
from funcnn.layers._conv import conv as conv
from funcnn.layers._conv import conv_naive as conv_naive
from funcnn.layers._dropout import dropout as dropout
from funcnn.layers._embedding import embedding as embedding
from funcnn.layers._embedding import word_embedding as word_embedding
from funcnn.layers._init import init_params as init_params
from funcnn.layers._init import init_state as init_state
from funcnn.layers._norms import group_norm as group_norm
from funcnn.layers._norms import layer_norm as layer_norm
from funcnn.layers._pool import PoolParam as PoolParam
from funcnn.layers._pool import avg_pool as avg_pool
from funcnn.layers._pool import global_avg_pool as global_avg_pool
from funcnn.layers._pool import max_pool as max_pool
from funcnn.layers._pool import max_pool_naive as max_pool_naive
from funcnn.layers._positional import positional_encoding as positional_encoding
from funcnn.layers._recurrent import gru as gru
from funcnn.layers._recurrent import gru_cell as gru_cell
from funcnn.layers._recurrent import gru_layer as gru_layer
from funcnn.layers._recurrent import gru_step as gru_step
from funcnn.layers._recurrent import lstm as lstm
from funcnn.layers._recurrent import lstm_cell as lstm_cell
from funcnn.layers._recurrent import lstm_layer as lstm_layer
from funcnn.layers._recurrent import lstm_step as lstm_step
from funcnn.layers._recurrent import rnn as rnn
from funcnn.layers._recurrent import rnn_cell as rnn_cell
from funcnn.layers._recurrent import rnn_layer as rnn_layer
from funcnn.layers._recurrent import rnn_step as rnn_step
from funcnn.layers._sandwiches import affine_relu as affine_relu
from funcnn.layers._sandwiches import conv_relu as conv_relu
from funcnn.layers._sandwiches import conv_relu_pool as conv_relu_pool
from funcnn.layers._sandwiches import dense_relu as dense_relu
from funcnn.layers._scan import scan as scan
from funcnn.layers._temporal import temporal_affine as temporal_affine
from funcnn.layers._temporal import temporal_dense as temporal_dense
from funcnn.layers._temporal_norm import temporal_layer_norm as temporal_layer_norm
from funcnn.layers._transformer import transformer_decoder_layer as transformer_decoder_layer
from funcnn.layers._transformer import transformer_encoder_layer as transformer_encoder_layer
