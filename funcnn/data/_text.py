"""Character-level text: a vocabulary, the text encoded as integer codes, and a contiguous train / val / test cut."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from funcnn._checks import fraction, int_at_least

__all__ = ["CharText", "char_text", "windows"]


@dataclass(frozen=True, eq=False)
class CharText:
    """A text cut in three contiguous parts, each an int64 array of codes ``(n,)`` into ``vocab`` (the sorted
    distinct characters of the whole text: code ``i`` is ``vocab[i]``). ``test`` is the end of the text,
    ``val`` the part just before it, ``train`` the rest."""

    vocab: str
    train: np.ndarray
    val: np.ndarray
    test: np.ndarray

    def encode(self, text: str) -> np.ndarray:
        """The codes of ``text``, int64 ``(len(text),)``; a character outside the vocabulary is a ValueError."""
        index = {c: i for i, c in enumerate(self.vocab)}
        unknown = sorted(set(text) - index.keys())
        if unknown:
            raise ValueError(f"CharText.encode: characters outside the vocabulary: {unknown[:10]!r}")
        return np.fromiter((index[c] for c in text), dtype=np.int64, count=len(text))

    def decode(self, codes: np.ndarray) -> str:
        """The text of integer ``codes`` (any shape, read in C order), each in ``[0, len(vocab))``."""
        codes = np.asarray(codes)
        if codes.size and (codes.dtype.kind not in "iu" or codes.min() < 0 or codes.max() >= len(self.vocab)):
            raise ValueError(f"CharText.decode: codes must be integers in [0, {len(self.vocab)}), got {codes.dtype}")
        return "".join(self.vocab[i] for i in codes.ravel())


def char_text(text: str, val_fraction: float = 0.1, test_fraction: float = 0.1) -> CharText:
    """``text`` encoded by its own sorted characters and cut, in order, into train, then the last
    ``val_fraction + test_fraction`` held out: val, then test (the last ``test_fraction``, rounded down).

    Args:
        text: the text.
        val_fraction: the share held out for validation.
        test_fraction: the share held out for the test (the end).

    Returns:
        A :class:`CharText`: ``vocab``, ``train``, ``val`` and ``test`` codes, ``encode`` and ``decode``.

    >>> from funcnn.data import char_text
    >>> t = char_text("abcabcabca")
    >>> t.vocab, t.train.tolist(), t.val.tolist(), t.test.tolist()
    ('abc', [0, 1, 2, 0, 1, 2, 0, 1], [2], [0])
    """
    val_fraction = fraction("char_text", "val_fraction", val_fraction)
    test_fraction = fraction("char_text", "test_fraction", test_fraction)
    n = len(text)
    n_test, n_val = int(n * test_fraction), int(n * val_fraction)
    if n - n_test - n_val < 2:
        raise ValueError(f"char_text: a text of {n} characters leaves fewer than 2 for training")
    vocab = "".join(sorted(set(text)))
    codes = np.frombuffer(text.encode("utf-32-le"), dtype=np.uint32)
    lookup = np.searchsorted(np.frombuffer(vocab.encode("utf-32-le"), dtype=np.uint32), codes).astype(np.int64)
    a, b = n - n_test - n_val, n - n_test
    return CharText(vocab, lookup[:a].copy(), lookup[a:b].copy(), lookup[b:].copy())


def windows(codes: np.ndarray, length: int) -> tuple[np.ndarray, np.ndarray]:
    """Non-overlapping next-character problems of ``length`` steps cut from ``codes`` ``(n,)``: inputs
    ``x`` ``(M, length)`` and targets ``y`` ``(M, length)`` with ``y[i, t] == x[i, t + 1]`` along the text
    (``M = (n - 1) // length``; the tail that fills no window is dropped).

    Args:
        codes: character codes ``(n,)``.
        length: the steps of each window, ``>= 1``.

    Returns:
        ``(x, y)``, each ``(M, length)``.

    >>> from funcnn.data import windows
    >>> x, y = windows(np.arange(7), 3)
    >>> x.tolist(), y.tolist()
    ([[0, 1, 2], [3, 4, 5]], [[1, 2, 3], [4, 5, 6]])
    """
    length = int_at_least("windows", "length", length, 1)
    codes = np.asarray(codes)
    if codes.ndim != 1 or len(codes) < length + 1:
        raise ValueError(f"windows: codes must be 1-D and longer than length {length}, got shape {codes.shape}")
    m = (len(codes) - 1) // length
    x = codes[: m * length].reshape(m, length).copy()
    y = codes[1 : m * length + 1].reshape(m, length).copy()
    return x, y
