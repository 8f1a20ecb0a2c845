"""Names every docstring example may use: ``np`` and ``fn`` (``import funcnn as fn``)."""

import numpy as np
import pytest

import funcnn


@pytest.fixture(autouse=True)
def _doctest_names(doctest_namespace: dict[str, object]) -> None:
    doctest_namespace.update(np=np, fn=funcnn)
