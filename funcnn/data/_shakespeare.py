"""The bundled text: eight of Shakespeare's tragedies, 1.16 million characters of plain ASCII.

See ``SHAKESPEARE_LICENSE.md`` beside this file for provenance and licence.
"""

from __future__ import annotations

import functools
import gzip
from importlib import resources

from funcnn.data._text import CharText, char_text
from funcnn.data._types import DataFormatError

__all__ = ["SHAKESPEARE_CHARS", "SHAKESPEARE_RESOURCE", "load_shakespeare", "shakespeare_text"]

SHAKESPEARE_RESOURCE = "shakespeare.txt.gz"
SHAKESPEARE_CHARS = 1_158_247


@functools.lru_cache(maxsize=1)
def shakespeare_text() -> str:
    """The bundled text, read and checked once: Hamlet, King Lear, Macbeth, Othello, Romeo and Juliet,
    Julius Caesar, Antony and Cleopatra, Coriolanus, in that order, four newlines apart."""
    where = f"{__package__}/{SHAKESPEARE_RESOURCE}"
    try:
        text = gzip.decompress(resources.files(__package__).joinpath(SHAKESPEARE_RESOURCE).read_bytes()).decode("ascii")
    except FileNotFoundError:
        raise
    except (OSError, EOFError, UnicodeDecodeError) as exc:
        raise DataFormatError(where, "gzip of ASCII text", f"{type(exc).__name__}: {exc}") from None
    if len(text) != SHAKESPEARE_CHARS:
        raise DataFormatError(where, f"{SHAKESPEARE_CHARS} characters", f"{len(text)}")
    return text


def load_shakespeare() -> CharText:
    """The bundled plays as a :class:`~funcnn.data.CharText`: its 73 characters as the vocabulary, the
    first 80% of the text for training, the next 10% for validation, the last 10% (most of Coriolanus,
    a play the model never sees in training) held out for the test. Fresh arrays on every call.

    Returns:
        A :class:`CharText` of the bundled plays.
    """
    return char_text(shakespeare_text(), val_fraction=0.1, test_fraction=0.1)
