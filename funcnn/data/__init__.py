"""Data sets for funcnn: bundled 8x8 digits and Shakespeare text, and local MNIST / CIFAR-10 readers.

Nothing here downloads anything; MNIST and CIFAR-10 are read from files you
already have. Runtime dependency: NumPy only.
"""

from funcnn.data._cifar import load_cifar10_binary as load_cifar10_binary
from funcnn.data._digits import load_digits as load_digits
from funcnn.data._idx import load_idx as load_idx
from funcnn.data._idx import load_mnist as load_mnist
from funcnn.data._shakespeare import load_shakespeare as load_shakespeare
from funcnn.data._text import CharText as CharText
from funcnn.data._text import char_text as char_text
from funcnn.data._text import windows as windows
from funcnn.data._types import DataFormatError as DataFormatError
from funcnn.data._types import Dataset as Dataset
from funcnn.data._types import Split as Split

__all__ = [
    "CharText",
    "DataFormatError",
    "Dataset",
    "Split",
    "char_text",
    "load_cifar10_binary",
    "load_digits",
    "load_idx",
    "load_mnist",
    "load_shakespeare",
    "windows",
]
