"""funcnn.data's text: char_text's encoding and contiguous cut, windows, and the bundled Shakespeare."""

from __future__ import annotations

import gzip
import hashlib
from importlib import resources

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from funcnn.data import CharText, char_text, load_shakespeare, windows

# the hashes written in funcnn/data/SHAKESPEARE_LICENSE.md
SHAKESPEARE_GZ_SHA256 = "eb505d578232c7fcded9fc2bf9d38af818f6aef470a50c4f08cf1f55587f7339"
SHAKESPEARE_TEXT_SHA256 = "253c8e117b28b98dcf02cd5ab9c42e66f6996db03a6f46014dae81d2fa89ee86"

texts = st.text(min_size=10, max_size=200)
fractions = st.floats(0, 0.4)


@given(texts, fractions, fractions)
def test_char_text_cuts_the_text_in_order_and_decodes_back(text, val_fraction, test_fraction):
    t = char_text(text, val_fraction, test_fraction)
    assert t.vocab == "".join(sorted(set(text)))
    assert (len(t.val), len(t.test)) == (int(len(text) * val_fraction), int(len(text) * test_fraction))
    assert t.decode(np.concatenate([t.train, t.val, t.test])) == text
    for part in (t.train, t.val, t.test):
        assert part.dtype == np.int64
        assert part.size == 0 or 0 <= part.min() <= part.max() < len(t.vocab)


@given(texts)
def test_encode_is_the_inverse_of_decode(text):
    t = char_text(text)
    assert t.decode(t.encode(text)) == text
    assert np.array_equal(t.encode(t.decode(t.train)), t.train)


def test_encode_and_decode_refuse_what_the_vocabulary_cannot_hold():
    t = char_text("abcabcabca")
    with pytest.raises(ValueError, match=r"CharText.encode: .*\['z'\]"):
        t.encode("abz")
    with pytest.raises(ValueError, match=r"CharText.decode: codes must be integers in \[0, 3\)"):
        t.decode(np.array([0, 3]))
    with pytest.raises(ValueError, match="CharText.decode"):
        t.decode(np.array([0.0]))


def test_char_text_refuses_a_text_that_leaves_nothing_to_train_on():
    with pytest.raises(ValueError, match="char_text: a text of 10 characters"):
        char_text("abcdefghij", 0.45, 0.5)  # 4 + 5 held out
    with pytest.raises(ValueError, match="char_text: val_fraction must be in"):
        char_text("abcdefgh", 1.0)


@given(st.integers(2, 60), st.integers(1, 12))
def test_windows_are_next_character_problems_along_the_text(n, length):
    codes = np.arange(n) * 7 % 11
    if n < length + 1:
        with pytest.raises(ValueError, match=f"windows: .*length {length}"):
            windows(codes, length)
        return
    x, y = windows(codes, length)
    m = (n - 1) // length
    assert x.shape == y.shape == (m, length)
    assert np.array_equal(x.ravel(), codes[: m * length])
    assert np.array_equal(y.ravel(), codes[1 : m * length + 1])
    x[0, 0] = -1  # fresh arrays: the text is untouched
    assert codes[0] == 0


def test_the_bundled_file_is_the_one_its_licence_note_describes():
    data = resources.files("funcnn.data").joinpath("shakespeare.txt.gz").read_bytes()
    assert hashlib.sha256(data).hexdigest() == SHAKESPEARE_GZ_SHA256
    assert hashlib.sha256(gzip.decompress(data)).hexdigest() == SHAKESPEARE_TEXT_SHA256


def test_load_shakespeare_holds_out_the_last_tenth_for_the_test():
    text = gzip.decompress(resources.files("funcnn.data").joinpath("shakespeare.txt.gz").read_bytes()).decode("ascii")
    t = load_shakespeare()
    assert isinstance(t, CharText) and len(t.vocab) == 73
    assert len(t.test) == len(text) // 10 and len(t.val) == len(text) // 10
    assert t.decode(t.test) == text[-len(t.test) :]
    assert t.decode(t.train) == text[: len(t.train)]
    assert text[-len(t.test) - 1 :].count("CORIOLANUS") > 0  # the test lies within the last play
    t.train[0] = -1
    assert load_shakespeare().train[0] != -1  # fresh arrays on every call
