"""The thread policy (funcnn/kernels/threads.py): a conv's batch and affine's rows split over funcnn's
threads give bitwise the results of the serial path, whatever the split and BLAS's thread count."""

import numpy as np
import pytest
from threadpoolctl import ThreadpoolController

import funcnn as fn
import funcnn.layers._conv_direct as conv_direct
import funcnn.layers._conv_fast as conv_module
from funcnn.kernels import threads
from funcnn.layers._handover import hand_over
from funcnn.tree import tree_leaves

BLAS = ThreadpoolController()


@pytest.fixture
def restore_split():
    saved = threads.split_threads()
    yield
    threads.set_split_threads(saved)


def _conv_and_affine(x, conv_params, pad, affine_params):
    """Every output and gradient of a conv, then an affine on its output, as one list."""
    y, conv_vjp = fn.conv(pad=pad)(conv_params, x)
    z, affine_vjp = fn.affine(affine_params, y)
    dz = np.cos(np.arange(z.size, dtype=z.dtype)).reshape(z.shape)
    d_affine, dy = affine_vjp(dz)
    return [y, z, *tree_leaves(d_affine), dy, *tree_leaves(conv_vjp(dy))]


@pytest.mark.parametrize("lanes", [16, 8, 0])  # float32 on register tiles (funcnn/layers/_conv_direct.py), or not
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("kernel, channels", [(5, 3), (3, 16)])  # im2col + BLAS; Winograd (3x3, >= 16 channels)
def test_results_are_bitwise_the_same_for_every_split_and_blas_thread_count(
    kernel, channels, dtype, lanes, restore_split, monkeypatch
):
    monkeypatch.setattr(conv_module, "CHUNK_BYTES", 1)  # one image a chunk: 7 chunks to split
    monkeypatch.setattr(conv_direct, "_LANES", [lanes])
    rng = np.random.default_rng(0)
    x = rng.standard_normal((7, channels, 9, 9)).astype(dtype)
    conv_params = {"w": rng.standard_normal((16, channels, kernel, kernel)).astype(dtype), "b": np.ones(16, dtype)}
    # dw = x^T dy is (1296, 65): 4 of affine's row blocks in the backward pass
    affine_params = {"w": rng.standard_normal((16 * 81, 130 // 2)).astype(dtype), "b": np.zeros(65, dtype)}
    pad = kernel // 2
    # the split off (1) is the serial schedule; only with BLAS on one thread is its summation order fixed
    threads.set_split_threads(1)
    with BLAS.limit(limits=1, user_api="blas"):
        want = _conv_and_affine(x, conv_params, pad, affine_params)
    for split, blas in [(2, None), (3, None), (7, 2), (2, 1)]:
        threads.set_split_threads(split)
        with BLAS.limit(limits=blas, user_api="blas"):
            got = _conv_and_affine(x, conv_params, pad, affine_params)
        for a, b in zip(got, want):
            assert a.dtype == dtype
            np.testing.assert_array_equal(a, b, err_msg=f"split {split}, BLAS threads {blas}")


# im2col, Winograd, 1x1 and (5x5) the register tiles, each with dx smaller than dy (but at least 3/4 of it:
# _conv_fast._fits)
@pytest.mark.parametrize("lanes", [16, 0])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize(("channels", "filters", "kernel"), [(6, 8, 3), (16, 20, 3), (8, 9, 1), (6, 8, 5)])
def test_a_conv_writing_dx_into_its_dy_gives_the_serial_answer_for_every_split(
    channels, filters, kernel, dtype, lanes, restore_split, monkeypatch
):
    # One image a chunk, and an image of dx smaller than one of dy: each chunk of dx lies over earlier
    # chunks of dy, which other threads read; it must wait for them (kernels/threads.py: ReadsFirst).
    monkeypatch.setattr(conv_module, "CHUNK_BYTES", 1)
    monkeypatch.setattr(conv_direct, "_LANES", [lanes])
    rng = np.random.default_rng(2)
    x = rng.standard_normal((7, channels, 12, 12)).astype(dtype)
    params = {"w": rng.standard_normal((filters, channels, kernel, kernel)).astype(dtype), "b": np.ones(filters, dtype)}
    threads.set_split_threads(1)
    y, vjp = fn.conv(pad=kernel // 2)(params, x)
    dy = rng.standard_normal(y.shape).astype(dtype)
    want = tree_leaves(vjp(dy))  # serial, into a new dx
    for split in (1, 2, 3, 7):
        threads.set_split_threads(split)
        for _ in range(3):  # a race would show on some runs, not all
            box = [dy.copy()]
            address = box[0].ctypes.data
            got = tree_leaves(hand_over(vjp, box, True))
            assert got[-1].ctypes.data == address  # dx took dy's memory
            for a, b in zip(got, want, strict=True):
                np.testing.assert_array_equal(a, b, err_msg=f"split {split}")


@pytest.mark.parametrize(("channels", "filters", "kernel"), [(3, 8, 3), (16, 40, 3), (4, 9, 1)])
def test_a_dx_under_three_quarters_of_its_dy_gets_memory_of_its_own(channels, filters, kernel):
    # dy's memory would stay alive past the conv's backward pass with a quarter or more of it unused
    rng = np.random.default_rng(3)
    x = rng.standard_normal((3, channels, 8, 8)).astype(np.float32)
    params = {"w": rng.standard_normal((filters, channels, kernel, kernel)).astype(np.float32),
              "b": np.ones(filters, np.float32)}  # fmt: skip
    y, vjp = fn.conv(pad=kernel // 2)(params, x)
    dy = rng.standard_normal(y.shape).astype(np.float32)
    want = tree_leaves(vjp(dy))
    box = [dy.copy()]
    address = box[0].ctypes.data
    got = tree_leaves(hand_over(vjp, box, True))
    assert got[-1].ctypes.data != address
    for a, b in zip(got, want, strict=True):
        np.testing.assert_array_equal(a, b)


@pytest.mark.parametrize("m, n", [(3 * threads.MIN_BLOCK + 5, 7), (7, 3 * threads.MIN_BLOCK + 5)])  # rows; columns
def test_affine_blocks_split_equals_the_plain_product_closely(m, n, restore_split):
    rng = np.random.default_rng(1)
    a, b = rng.standard_normal((m, 40)), rng.standard_normal((40, n))
    threads.set_split_threads(2)
    got = threads.matmul_split(a, b)
    # each entry is a 40-term dot product in float64, summed in BLAS's order: within 40 eps of sum |a||b|
    bound = 40 * np.finfo(np.float64).eps * (np.abs(a) @ np.abs(b))
    assert np.all(np.abs(got - a @ b) <= bound)


def test_map_groups_keeps_chunk_order_and_restores_blas_threads(restore_split):
    before = [lib.num_threads for lib in BLAS.lib_controllers if lib.user_api == "blas"]
    threads.set_split_threads(3)
    seen = []

    def task(parts):
        seen.append([lib.num_threads for lib in BLAS.lib_controllers if lib.user_api == "blas"])
        return [part.start for part in parts]

    chunks = [slice(i, i + 1) for i in range(8)]
    assert threads.map_groups(task, chunks) == list(range(8))
    assert all(counts == [1] * len(before) for counts in seen)  # BLAS on one thread inside
    assert [lib.num_threads for lib in BLAS.lib_controllers if lib.user_api == "blas"] == before


def test_the_split_is_off_for_one_thread_and_a_bad_count_is_refused(restore_split, monkeypatch):
    threads.set_split_threads(1)
    calls = []
    threads.map_groups(lambda parts: calls.append(list(parts)) or [], [slice(0, 1), slice(1, 2)])
    assert calls == [[slice(0, 1), slice(1, 2)]]  # one call, in the calling thread
    with pytest.raises(ValueError, match="set_split_threads: count must be >= 1, got 0"):
        threads.set_split_threads(0)
    monkeypatch.setenv("FUNCNN_SPLIT_THREADS", "1")
    assert threads._default_threads() == 1
