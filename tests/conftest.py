import os

import numpy as np
import pytest
from hypothesis import HealthCheck, settings

# The first call of a fast layer compiles its Numba kernels, so no example deadline anywhere.
settings.register_profile(
    "ci",
    derandomize=True,
    deadline=None,
    max_examples=40,
    print_blob=True,
    suppress_health_check=[HealthCheck.too_slow],
)
settings.register_profile("dev", deadline=None, max_examples=60, suppress_health_check=[HealthCheck.too_slow])
settings.load_profile("ci" if os.environ.get("CI", "").lower() == "true" else "dev")


@pytest.fixture(autouse=True)
def _raise_on_float_errors():
    """Overflow or invalid operations inside a layer fail the test instead of passing silently."""
    with np.errstate(all="raise", under="ignore"):
        yield
