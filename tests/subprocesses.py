"""For tests that send a real SIGINT to a command they start."""

import signal


def default_sigint() -> None:
    """``preexec_fn`` giving the command the default SIGINT disposition, as a terminal's Ctrl-C finds it: a
    shell's background job inherits SIGINT ignored, and Python then keeps ignoring it (the test would hang)."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)
