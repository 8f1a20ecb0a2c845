"""The benchmarks' networks build with today's API (the benchmarks themselves are not run by the tests)."""

import sys
from pathlib import Path

import numpy as np
import pytest

import funcnn as fn

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
import step_nets  # noqa: E402


@pytest.mark.parametrize("name", sorted(step_nets.NETS))
def test_the_step_benchmarks_nets_build_and_run(name):
    net = step_nets.funcnn_net(name)
    _, params = fn.init_params(net, np.random.default_rng(0), (3, 32, 32))
    scores, _ = net(params, np.zeros((2, 3, 32, 32), np.float32))
    assert scores.shape == (2, 10) and scores.dtype == np.float32
