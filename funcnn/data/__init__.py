"""Data sets for funcnn: bundled 8x8 digits, and local MNIST / CIFAR-10 readers.

Nothing here downloads anything; MNIST and CIFAR-10 are read from files you
already have. Runtime dependency: NumPy only.
"""

from .cifar import load_cifar10_binary as load_cifar10_binary
from .digits import load_digits as load_digits
from .idx import load_idx as load_idx
from .idx import load_mnist as load_mnist
from .types import DataFormatError as DataFormatError
from .types import Dataset as Dataset
from .types import Split as Split

__all__ = [
    "DataFormatError",
    "Dataset",
    "Split",
    "load_cifar10_binary",
    "load_digits",
    "load_idx",
    "load_mnist",
]
