"""``funcnn train --dataset shakespeare``: a char-level LSTM (or RNN, or transformer) on the bundled plays,
trained by :func:`funcnn.fit` on windows of ``--seq-length`` characters with Adam and the gradient clipped to a global
norm; it ends with the test loss per character on the held-out last 10% and a sample."""

from __future__ import annotations

import argparse
import math
import time
from typing import Any

import numpy as np

from funcnn.app.recipe import fit_job, optimizer_for
from funcnn.app.runs import fit_in_folder, write_history
from funcnn.core import Layer, LayerFn
from funcnn.data import CharText, load_shakespeare, windows
from funcnn.layers import init_params
from funcnn.nets import char_loss, char_rnn, char_transformer, sample_chars
from funcnn.tree import PyTree

SAMPLE_LENGTH = 200
EVAL_BATCH = 256


def mean_loss(net: LayerFn, params: PyTree, x: np.ndarray, y: np.ndarray) -> float:
    """The mean loss per character of ``net`` on windows ``x``, ``y`` ``(M, T)``, in batches, in nats."""
    total = 0.0
    for i in range(0, len(x), EVAL_BATCH):
        scores, _ = net(params, x[i : i + EVAL_BATCH])
        total += float(char_loss(scores, y[i : i + EVAL_BATCH])[0]) * len(scores)
    return total / len(x)


def sample_text(net: LayerFn, params: PyTree, text: CharText, seed: int) -> str:
    """``SAMPLE_LENGTH`` characters drawn from ``net`` after a newline (temperature 1)."""
    prime = text.encode("\n")[None, :]
    return text.decode(sample_chars(net, params, prime, SAMPLE_LENGTH, np.random.default_rng([seed, 3])))  # type: ignore[arg-type]


def text_net(vocab_size: int, args: argparse.Namespace) -> Layer:
    """The char LSTM or RNN of ``--cell``, or with ``--cell transformer`` a decoder-only transformer of width
    ``--hidden``: 2 pre-norm causal layers, 4 heads, feed-forward 4 x width."""
    if args.cell == "transformer":
        return char_transformer(vocab_size, args.hidden, num_heads=4, num_layers=2, max_len=args.seq_length)
    return char_rnn(vocab_size, args.hidden, args.embed, args.cell)


def saved_text_net(config: dict[str, Any]) -> tuple[Layer, tuple[int, ...]]:
    """The network a text-job checkpoint's ``config`` describes (``--cell``, ``--hidden``, ``--embed``,
    ``--seq-length``) on the bundled plays' characters, and one example's shape ``(seq_length,)``."""
    net = text_net(len(load_shakespeare().vocab), argparse.Namespace(**config))
    return net, (int(config["seq_length"]),)


def train_text(args: argparse.Namespace) -> int:
    """Run the text job with ``args`` (train's options, defaults filled in by ``job_defaults``)."""
    started = time.perf_counter()
    if args.resume and args.overwrite:
        raise ValueError("--resume and --overwrite contradict each other: continue the run in --out, or replace it")
    text = load_shakespeare()
    parts = (text.train[: args.train_chars or None], text.val, text.test)
    train, val, test = (windows(part, args.seq_length) for part in parts)
    net = text_net(len(text.vocab), args)
    _, params = init_params(net, np.random.default_rng(args.seed), (args.seq_length,), args.dtype)
    steps_per_epoch = -(-len(train[0]) // args.batch_size)
    optimizer = optimizer_for(args, steps_per_epoch)
    header = (
        f"funcnn train: {net.name}\n  shakespeare: {len(train[0])} train, {len(val[0])} val, {len(test[0])} test "
        f"sequences of {args.seq_length} characters ({len(text.vocab)} distinct); {args.optimizer} lr {args.lr} "
        f"(x{args.lr_decay} per epoch), clip {args.clip}, batch {args.batch_size}, {args.epochs} epochs, "
        f"seed {args.seed}"
    )
    result, out = fit_in_folder(
        args,
        header,
        lambda checkpoint, log: fit_job(
            args, net, params, train, val, optimizer, checkpoint=checkpoint, log=log, loss=char_loss, unit="seq"
        ),
    )
    nats = mean_loss(net, result.best_params, *test)
    seconds = time.perf_counter() - started
    history = result.history
    summary = {
        "dataset": args.dataset,
        "test_loss_nats_per_char": nats,
        "test_bits_per_char": nats / math.log(2),
        "best_val_char_acc": history.best_val_acc,
        "best_epoch": history.best_epoch,
        "seconds": seconds,
    }
    plot = write_history(out, summary, result, f"{net.name} on shakespeare: test {nats:.3f} nats/char")
    print(f"test loss {nats:.4f} nats/char ({nats / math.log(2):.4f} bits/char)")
    print(f"sample:\n{sample_text(net, result.best_params, text, args.seed)}")
    print(
        f"{seconds:.1f} s in all; wrote {out / 'checkpoint.npz'}, {out / 'history.json'}"
        + (f", {plot}" if plot else "")
    )
    return 0
