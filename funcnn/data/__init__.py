"""Data sets for funcnn: bundled 8x8 digits and Shakespeare text, and local MNIST / CIFAR-10 readers.

Nothing here downloads anything; MNIST and CIFAR-10 are read from files you
already have. Runtime dependency: NumPy only.
"""

from funcnn.data.cifar import load_cifar10_binary as load_cifar10_binary
from funcnn.data.digits import load_digits as load_digits
from funcnn.data.idx import load_idx as load_idx
from funcnn.data.idx import load_mnist as load_mnist
from funcnn.data.shakespeare import load_shakespeare as load_shakespeare
from funcnn.data.text import CharText as CharText
from funcnn.data.text import char_text as char_text
from funcnn.data.text import windows as windows
from funcnn.data.types import DataFormatError as DataFormatError
from funcnn.data.types import Dataset as Dataset
from funcnn.data.types import Split as Split

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
