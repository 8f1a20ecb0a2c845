"""funcnn: a functional neural-net library on NumPy with explicit, hand-written VJPs.

Every layer is a pure function ``layer(params, x) -> (y, vjp)`` with ``vjp(dy) -> (dparams, dx)``.
"""

import sys as _sys


def _started_as_command() -> bool:
    """Whether this process is the ``funcnn`` command (``python [options] -m funcnn`` or the script)."""
    argv = list(getattr(_sys, "orig_argv", []))
    if "-m" in argv:
        return argv[argv.index("-m") + 1 : argv.index("-m") + 2] == ["funcnn"]
    return bool(_sys.argv) and _sys.argv[0].replace("\\", "/").rsplit("/", 1)[-1] in ("funcnn", "funcnn.exe")


if _started_as_command():
    # ``python -m funcnn`` imports this package before any of the command's code runs: Ctrl-C while
    # it loads prints one line instead of a traceback through NumPy's imports.
    def _one_line_interrupt(kind, value, traceback):  # type: ignore[no-untyped-def]
        if issubclass(kind, KeyboardInterrupt):
            print("funcnn: interrupted while starting", file=_sys.stderr)
        else:
            _sys.__excepthook__(kind, value, traceback)

    _sys.excepthook = _one_line_interrupt

from funcnn import augment as augment
from funcnn import nets as nets
from funcnn import optim as optim
from funcnn.analysis import Summary as Summary
from funcnn.analysis import SummaryRow as SummaryRow
from funcnn.analysis import class_score_gradient as class_score_gradient
from funcnn.analysis import saliency as saliency
from funcnn.analysis import summary as summary
from funcnn.core import Layer as Layer
from funcnn.core import bind as bind
from funcnn.core import layer as layer
from funcnn.core import moded_layer as moded_layer
from funcnn.core import pull_back as pull_back
from funcnn.core import run as run
from funcnn.core import skips_dx as skips_dx
from funcnn.gradcheck import LeafCheck as LeafCheck
from funcnn.gradcheck import NonDifferentiableError as NonDifferentiableError
from funcnn.gradcheck import NonDifferentiableWarning as NonDifferentiableWarning
from funcnn.gradcheck import StepSweep as StepSweep
from funcnn.gradcheck import VJPCheckError as VJPCheckError
from funcnn.gradcheck import VJPReport as VJPReport
from funcnn.gradcheck import check_vjp as check_vjp
from funcnn.gradcheck import numerical_gradient as numerical_gradient
from funcnn.gradcheck import numerical_gradient_array as numerical_gradient_array
from funcnn.gradcheck import rel_error as rel_error
from funcnn.gradcheck import step_sweep as step_sweep
from funcnn.layers import affine as affine
from funcnn.layers import affine_relu as affine_relu
from funcnn.layers import avg_pool as avg_pool
from funcnn.layers import batch_norm as batch_norm
from funcnn.layers import causal_mask as causal_mask
from funcnn.layers import chain as chain
from funcnn.layers import conv as conv
from funcnn.layers import conv_naive as conv_naive
from funcnn.layers import conv_relu as conv_relu
from funcnn.layers import conv_relu_pool as conv_relu_pool
from funcnn.layers import dense as dense
from funcnn.layers import dense_relu as dense_relu
from funcnn.layers import dropout as dropout
from funcnn.layers import embedding as embedding
from funcnn.layers import fan_out as fan_out
from funcnn.layers import global_avg_pool as global_avg_pool
from funcnn.layers import group_norm as group_norm
from funcnn.layers import gru as gru
from funcnn.layers import gru_cell as gru_cell
from funcnn.layers import gru_layer as gru_layer
from funcnn.layers import gru_step as gru_step
from funcnn.layers import identity as identity
from funcnn.layers import init_params as init_params
from funcnn.layers import init_state as init_state
from funcnn.layers import layer_norm as layer_norm
from funcnn.layers import leaky_relu as leaky_relu
from funcnn.layers import lstm as lstm
from funcnn.layers import lstm_cell as lstm_cell
from funcnn.layers import lstm_layer as lstm_layer
from funcnn.layers import lstm_step as lstm_step
from funcnn.layers import max_pool as max_pool
from funcnn.layers import max_pool_naive as max_pool_naive
from funcnn.layers import multi_head_attention as multi_head_attention
from funcnn.layers import positional_encoding as positional_encoding
from funcnn.layers import pull_back_last as pull_back_last
from funcnn.layers import relu as relu
from funcnn.layers import remat as remat
from funcnn.layers import remat_chain as remat_chain
from funcnn.layers import residual as residual
from funcnn.layers import rnn as rnn
from funcnn.layers import rnn_cell as rnn_cell
from funcnn.layers import rnn_layer as rnn_layer
from funcnn.layers import rnn_step as rnn_step
from funcnn.layers import sandwich as sandwich
from funcnn.layers import scan as scan
from funcnn.layers import self_attention as self_attention
from funcnn.layers import sigmoid as sigmoid
from funcnn.layers import spatial_batch_norm as spatial_batch_norm
from funcnn.layers import tanh as tanh
from funcnn.layers import temporal_affine as temporal_affine
from funcnn.layers import temporal_dense as temporal_dense
from funcnn.layers import temporal_layer_norm as temporal_layer_norm
from funcnn.layers import transformer_decoder_layer as transformer_decoder_layer
from funcnn.layers import transformer_encoder_layer as transformer_encoder_layer
from funcnn.layers import word_embedding as word_embedding
from funcnn.losses import loss_layer as loss_layer
from funcnn.losses import sigmoid_bce_loss as sigmoid_bce_loss
from funcnn.losses import softmax_loss as softmax_loss
from funcnn.losses import svm_loss as svm_loss
from funcnn.losses import temporal_softmax_loss as temporal_softmax_loss
from funcnn.training import Callback as Callback
from funcnn.training import Checkpoint as Checkpoint
from funcnn.training import DoctorReport as DoctorReport
from funcnn.training import EpochEnd as EpochEnd
from funcnn.training import FitResult as FitResult
from funcnn.training import History as History
from funcnn.training import LRFind as LRFind
from funcnn.training import MemoryReport as MemoryReport
from funcnn.training import MemoryRow as MemoryRow
from funcnn.training import accuracy as accuracy
from funcnn.training import doctor as doctor
from funcnn.training import early_stopping as early_stopping
from funcnn.training import fit as fit
from funcnn.training import keep_freed_memory as keep_freed_memory
from funcnn.training import l2_penalty as l2_penalty
from funcnn.training import lr_find as lr_find
from funcnn.training import measure_memory as measure_memory
from funcnn.training import predict as predict
from funcnn.training import training_step as training_step
from funcnn.training import value_and_grad as value_and_grad
from funcnn.training import with_l2 as with_l2

__version__ = "0.1.0"
