"""Experiment: NumPy's data allocator replaced (NEP 49) by one that aligns every array to ALIGN bytes
(OFFSET > 0: misaligned on purpose by OFFSET). Import and call install(align, offset)."""

import ctypes

import numba
import numpy as np

libc = ctypes.CDLL(None)
_aligned_alloc = libc.aligned_alloc
_aligned_alloc.restype = ctypes.c_size_t
_aligned_alloc.argtypes = [ctypes.c_size_t, ctypes.c_size_t]
_free = libc.free
_free.restype = None
_free.argtypes = [ctypes.c_size_t]
_memset = libc.memset
_memset.restype = ctypes.c_size_t
_memset.argtypes = [ctypes.c_size_t, ctypes.c_int, ctypes.c_size_t]
_memcpy = libc.memcpy
_memcpy.restype = ctypes.c_size_t
_memcpy.argtypes = [ctypes.c_size_t, ctypes.c_size_t, ctypes.c_size_t]
_realloc = libc.realloc
_realloc.restype = ctypes.c_void_p
_realloc.argtypes = [ctypes.c_void_p, ctypes.c_size_t]

STATE = {}


def make(align, offset):
    # header of `align` bytes in front when offset > 0: the pointer handed out is base + offset, and free
    # must get base back: we keep offset constant so base = ptr - offset.
    pad = align if offset else 0

    @numba.cfunc(numba.types.uintp(numba.types.uintp, numba.types.uintp))
    def c_malloc(ctx, size):
        n = (size + pad + align - 1) // align * align
        if n == 0:
            n = align
        p = _aligned_alloc(align, n)
        if p == 0:
            return p
        return p + offset

    @numba.cfunc(numba.types.uintp(numba.types.uintp, numba.types.uintp, numba.types.uintp))
    def c_calloc(ctx, nelem, elsize):
        size = nelem * elsize
        n = (size + pad + align - 1) // align * align
        if n == 0:
            n = align
        p = _aligned_alloc(align, n)
        if p == 0:
            return p
        _memset(p, 0, n)
        return p + offset

    @numba.cfunc(numba.types.uintp(numba.types.uintp, numba.types.uintp, numba.types.uintp))
    def c_realloc(ctx, ptr, new_size):
        n = (new_size + pad + align - 1) // align * align
        if n == 0:
            n = align
        p = _aligned_alloc(align, n)
        if p == 0:
            return p
        if ptr != 0:
            _memcpy(p + offset, ptr, new_size)  # may read past the old block's end: only in experiments
            _free(ptr - offset)
        return p + offset

    @numba.cfunc(numba.types.void(numba.types.uintp, numba.types.uintp, numba.types.uintp))
    def c_free(ctx, ptr, size):
        if ptr != 0:
            _free(ptr - offset)

    return c_malloc, c_calloc, c_realloc, c_free


class Allocator(ctypes.Structure):
    _fields_ = [("ctx", ctypes.c_void_p)] + [(k, ctypes.c_void_p) for k in ("malloc", "calloc", "realloc", "free")]


class Handler(ctypes.Structure):
    _fields_ = [("name", ctypes.c_char * 127), ("version", ctypes.c_uint8), ("allocator", Allocator)]


def install(align=64, offset=0):
    funcs = make(align, offset)
    handler = Handler(f"aligned{align}+{offset}".encode(), 1, Allocator(None, *(f.address for f in funcs)))
    api = ctypes.pythonapi
    api.PyCapsule_New.restype = ctypes.py_object
    api.PyCapsule_New.argtypes = [ctypes.c_void_p, ctypes.c_char_p, ctypes.c_void_p]
    api.PyCapsule_GetPointer.restype = ctypes.c_void_p
    api.PyCapsule_GetPointer.argtypes = [ctypes.py_object, ctypes.c_char_p]
    capsule = api.PyCapsule_New(ctypes.addressof(handler), b"mem_handler", None)
    from numpy._core import _multiarray_umath as mu

    table = api.PyCapsule_GetPointer(mu._ARRAY_API, None)
    set_handler = ctypes.PYFUNCTYPE(ctypes.py_object, ctypes.py_object)(
        ctypes.cast(table, ctypes.POINTER(ctypes.c_void_p))[304]
    )
    old = set_handler(capsule)
    STATE.update(funcs=funcs, handler=handler, capsule=capsule, old=old)
    return np._core.multiarray.get_handler_name()


if __name__ == "__main__":
    print(install(64, 0))
    a = np.empty(10**6, np.float32)
    print(a.ctypes.data % 64, np.zeros(5).ctypes.data % 64)
    b = np.ones((1000, 1000)) @ np.ones((1000, 1000))
    print(b.ctypes.data % 64, b[0, 0])
