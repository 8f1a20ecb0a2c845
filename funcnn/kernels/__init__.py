"""Numba kernels. Imported lazily (on the first fast conv or pool call), so ``import funcnn``
does not pay for importing Numba."""
