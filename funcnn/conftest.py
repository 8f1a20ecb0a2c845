"""For the test command only (not imported by funcnn): the names every docstring example may use, ``np`` and
``fn`` (``import funcnn as fn``); numpy keeps its doctest set-up beside its modules the same way."""

import numpy as np
import pytest

import funcnn


@pytest.fixture(autouse=True)
def _doctest_names(doctest_namespace: dict[str, object]) -> None:
    doctest_namespace.update(np=np, fn=funcnn)
