"""The ``funcnn`` command and what only it uses: named data sets and the gradient problems of
``funcnn check``. Nothing in the library imports this package."""
