"""step_sweep shows the V of truncation against rounding error, with check_vjp's step marked."""

import numpy as np

import funcnn as fn
from funcnn.gradcheck import STEP


def test_step_sweep_errors_form_a_v_with_the_bottom_near_check_vjps_step():
    r = np.random.default_rng(0)
    params = {"w": r.standard_normal((4, 3, 3, 3)), "b": r.standard_normal(4)}
    sweep = fn.step_sweep(fn.chain(fn.conv(stride=1, pad=1), fn.tanh), (params, ()), r.standard_normal((2, 3, 6, 6)))
    assert sweep.steps == tuple(10.0**-k for k in range(1, 11))
    for dtype, errors in sweep.errors.items():
        best = int(np.argmin(errors))
        assert 0 < best < len(errors) - 1, dtype  # falls, then rises
        assert errors[0] > 100 * errors[best] and errors[-1] > 100 * errors[best]
        chosen = sweep.steps.index(sweep.chosen[dtype])
        # The bottom lies near h* = (3 eps / |f'''|)^(1/3); which decade holds the least error there
        # depends on rounding (the BLAS kernel's summation order), and one decade above the bottom the
        # truncation error is already 100x larger (it goes as h^2): so the chosen step is within one
        # decade of the bottom, which no fixed ratio of errors can say on every kernel.
        assert abs(chosen - best) <= 1, (dtype, sweep.steps[best])
    assert np.argmin(sweep.errors["float32"]) < np.argmin(sweep.errors["float64"])  # float32 needs larger steps
    assert sweep.chosen == {"float64": 1e-5, "float32": 1e-3}
    table = str(sweep).splitlines()
    assert [line.split()[0] for line in table if line.rstrip().endswith("*")] == ["1e-03"]
    assert any("1e-05" in line and line.split()[1].endswith("*") for line in table)


def test_the_marked_step_is_derived_from_check_vjps_steps_for_the_dtypes_swept():
    """A sweep built from its results alone (here: one dtype) marks check_vjp's step; nothing to keep in sync."""
    steps = (1e-4, 1e-5, 1e-6)
    sweep = fn.StepSweep(steps, {"float64": np.array([1e-6, 1e-9, 1e-7])})
    assert sweep.chosen == {"float64": STEP[np.dtype(np.float64)]}
    marked = [line.split()[0] for line in str(sweep).splitlines() if line.rstrip().endswith("*")]
    assert marked == ["1e-05"]
