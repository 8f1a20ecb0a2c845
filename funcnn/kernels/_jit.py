"""``jit``: numba.njit with the on-disk cache when a cache folder is writable, without it otherwise."""

from __future__ import annotations

import warnings
from collections.abc import Callable
from typing import Any, Literal, TypeVar, cast

import numba

Kernel = TypeVar("Kernel", bound=Callable[..., Any])


def jit(inline: Literal["never", "always"] = "never") -> Callable[[Kernel], Kernel]:
    """Decorate a kernel for lazy compilation. Never fastmath: these kernels are gradient-checked.

    NumPy's error model: a float division by zero gives inf or NaN as in NumPy instead of raising,
    which also lets LLVM vectorise loops that divide (Adam's update ran 4x faster)."""

    def decorate(fn: Kernel) -> Kernel:  # the compiled kernel takes and returns what ``fn`` does
        try:
            return cast(Kernel, numba.njit(cache=True, nogil=True, inline=inline, error_model="numpy")(fn))
        except RuntimeError as error:  # numba found no writable cache location
            warnings.warn(
                f"funcnn: Numba cannot cache {fn.__name__} ({error}); it compiles in every new process", stacklevel=2
            )
            return cast(Kernel, numba.njit(cache=False, nogil=True, inline=inline, error_model="numpy")(fn))

    return decorate
