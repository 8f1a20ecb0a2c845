"""The course's networks, built from layers with ``chain`` and ``sandwich``: the classifiers (each a layer
ending in class scores ``(N, num_classes)``; make its params with :func:`funcnn.init_params`), the course's
captioning RNN and
CaptioningTransformer, and character-level language models (an LSTM and a small decoder-only transformer).

With ``batch_norm=True`` or ``dropout > 0`` a classifier is moded: train it with ``fit`` (which carries
the state and switches the mode) or call ``.run(params, x, state, train=..., rng=...)``.
"""

from funcnn.nets._captioning import CaptioningRNN as CaptioningRNN
from funcnn.nets._captioning import captioning_rnn as captioning_rnn
from funcnn.nets._char_rnn import char_loss as char_loss
from funcnn.nets._char_rnn import char_rnn as char_rnn
from funcnn.nets._char_rnn import sample_chars as sample_chars
from funcnn.nets._convnets import fc_net as fc_net
from funcnn.nets._convnets import three_layer_convnet as three_layer_convnet
from funcnn.nets._convnets import two_layer_net as two_layer_net
from funcnn.nets._transformer import CaptioningTransformer as CaptioningTransformer
from funcnn.nets._transformer import captioning_transformer as captioning_transformer
from funcnn.nets._transformer import char_transformer as char_transformer
from funcnn.nets._transformer import sample_transformer_chars as sample_transformer_chars

__all__ = [
    "CaptioningRNN",
    "CaptioningTransformer",
    "captioning_rnn",
    "captioning_transformer",
    "char_loss",
    "char_rnn",
    "char_transformer",
    "fc_net",
    "sample_chars",
    "sample_transformer_chars",
    "three_layer_convnet",
    "two_layer_net",
]
