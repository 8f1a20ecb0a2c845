"""The course's networks, built from layers with ``chain`` and ``sandwich``: the classifiers (each a layer
ending in class scores ``(N, num_classes)``; make its params with :func:`funcnn.init_params`), the course's
captioning RNN, and a character-level language model.

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

__all__ = [
    "CaptioningRNN",
    "captioning_rnn",
    "char_loss",
    "char_rnn",
    "fc_net",
    "sample_chars",
    "three_layer_convnet",
    "two_layer_net",
]
