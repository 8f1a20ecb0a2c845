"""The fast conv's chunked path (columns recomputed in backward) and the Numba cache fallback."""

import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
from bounds import assert_conv_matches_reference
from hypothesis import given, settings

import funcnn as fn
from funcnn.layers._conv_direct import set_tile_lanes
from funcnn.testing import conv_problems
from funcnn.tree import tree_leaves

ROOT = Path(__file__).resolve().parents[1]
import funcnn.layers._conv_fast as conv_fast


@settings(max_examples=30)
@given(conv_problems(max_batch=5))
def test_chunked_conv_equals_naive_and_vjp_repeats(p):
    """CHUNK_BYTES=1 puts each image in a chunk of its own, so backward recomputes the columns (the register
    tiles off: they would take the float32 stride-1 convs)."""
    chunk_bytes = conv_fast.CHUNK_BYTES
    conv_fast.CHUNK_BYTES = 1
    set_tile_lanes(0)
    try:
        y, vjp = fn.conv(**p.conv_param)(p.params, p.x)
    finally:
        conv_fast.CHUNK_BYTES = chunk_bytes
        set_tile_lanes(None)
    dy = np.random.default_rng(0).standard_normal(y.shape).astype(p.x.dtype)
    first, second = vjp(dy), vjp(dy)
    for a, b in zip(tree_leaves(first), tree_leaves(second)):
        np.testing.assert_array_equal(a, b)
        assert a.dtype == p.x.dtype
    assert_conv_matches_reference(y, *first, p.conv_param, p.params, p.x, dy)


RUN_LAYERS = """
import sys
import numpy as np
import funcnn as fn
sys.path.insert(0, TESTS)
from bounds import assert_conv_matches_reference
rng = np.random.default_rng(0)
for dtype in (np.float32, np.float64):
    x = rng.standard_normal((3, 2, 7, 6)).astype(dtype)
    params = {"w": rng.standard_normal((4, 2, 3, 3)).astype(dtype), "b": rng.standard_normal(4).astype(dtype)}
    y, vjp = fn.conv(stride=2, pad=1)(params, x)
    dy = np.ones_like(y)
    assert_conv_matches_reference(y, *vjp(dy), {"stride": 2, "pad": 1}, params, x, dy)
    (y, vjp), (y0, vjp0) = fn.max_pool()((), x), fn.max_pool_naive()((), x)
    np.testing.assert_array_equal(y, y0)  # max-pool selects: no rounding, exactly equal
    np.testing.assert_array_equal(vjp(np.ones_like(y))[1], vjp0(np.ones_like(y))[1])
print("ok")
""".replace("TESTS", repr(str(Path(__file__).resolve().parent)))


def run(code, cwd, **env):
    full_env = {**os.environ, **env}
    result = subprocess.run(
        [sys.executable, "-c", code], check=False, cwd=cwd, env=full_env, capture_output=True, text=True, timeout=600
    )
    assert result.returncode == 0, result.stderr
    return result


def test_layers_run_when_numba_has_no_cache_location(tmp_path):
    """Every cache locator refusing (as on a read-only install with no writable user cache):
    funcnn still imports, warns once per kernel, and compiles in memory."""
    no_locator = (
        "import numba.core.caching as c\n(getattr(c, 'CacheImpl', None) or c._CacheImpl)._locator_classes = []\n"
    )
    result = run(no_locator + RUN_LAYERS, tmp_path, PYTHONPATH=str(ROOT))
    assert result.stdout.strip() == "ok"
    assert "Numba cannot cache" in result.stderr


def test_layers_run_from_an_install_with_no_writable_cache_folder(tmp_path):
    """A copy of the package whose __pycache__ cannot be made, and NUMBA_CACHE_DIR and the user
    cache folder that cannot be made either (files stand where the folders should be, which stops
    root too, unlike permissions)."""
    install = tmp_path / "site"
    shutil.copytree(ROOT / "funcnn", install / "funcnn", ignore=shutil.ignore_patterns("__pycache__"))
    blockers = [install / "funcnn" / "kernels" / "__pycache__", tmp_path / "numba-cache", tmp_path / "user-cache"]
    for blocker in blockers:
        blocker.write_text("not a folder")
    result = run(
        RUN_LAYERS,
        tmp_path,
        PYTHONPATH=str(install),
        NUMBA_CACHE_DIR=str(blockers[1]),
        XDG_CACHE_HOME=str(blockers[2]),
        HOME=str(blockers[2]),
        PYTHONDONTWRITEBYTECODE="1",
    )
    assert result.stdout.strip() == "ok"
    assert "Numba cannot cache" in result.stderr and all(blocker.is_file() for blocker in blockers)
