"""Small training runs on the digits, shared by test_train and test_runs."""

import numpy as np

from funcnn.data import load_digits
from funcnn.layers import init_params
from funcnn.nets import three_layer_convnet
from funcnn.optim import sgd
from funcnn.training import Checkpoint, fit

DIGITS = load_digits(np.float64)


def small_net(filters=2, hidden=8, **options):
    """A three-layer convnet on 8x8 digits with ``filters`` 3x3 filters and ``hidden`` hidden units."""
    return three_layer_convnet(num_filters=filters, filter_size=3, hidden_dim=hidden, num_classes=10, **options)


def small_fit(
    epochs=2,
    *,
    n=40,
    n_val=20,
    x=None,
    y=None,
    net=None,
    params=None,
    batch_size=8,
    optimizer=None,
    checkpoint=None,
    resume=False,
    config=None,
    allow_config_change=False,
    **kwargs,
):
    """``fit`` ``net`` (default :func:`small_net`) from ``params`` (default: initialised from seed 0) on the
    first ``n`` training digits (or ``x``, ``y``), validated on the first ``n_val``, with sgd(0.05) unless
    ``optimizer``, silently; ``checkpoint`` (a path) with ``resume``, ``config`` and ``allow_config_change``
    makes its :class:`funcnn.Checkpoint`."""
    if checkpoint is not None:
        kwargs["checkpoint"] = Checkpoint(checkpoint, resume, config, allow_config_change)
    net = net or small_net()
    params = init_params(net, np.random.default_rng(0), (1, 8, 8), np.float64)[1] if params is None else params
    x = DIGITS.train.x[:n] if x is None else x
    y = DIGITS.train.y[:n] if y is None else y
    val = (DIGITS.val.x[:n_val], DIGITS.val.y[:n_val])
    return fit(
        net, params, (x, y), val, optimizer or sgd(0.05), epochs=epochs, batch_size=batch_size, log=None, **kwargs
    )
