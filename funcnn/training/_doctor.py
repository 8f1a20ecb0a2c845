"""``doctor``: cs231n's checks before a long training run ("babysitting the learning process").

Each check passes, warns or fails with the numbers behind it: the initial loss, the loss rising with
regularization, the whole network's gradient (data loss and L2 term apart), overfitting a tiny
subset, and the update-to-weight ratio per weight after a few steps at the chosen learning rate.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from dataclasses import dataclass, field

import numpy as np
from typing_extensions import override

from funcnn._checks import int_at_least, number_at_least
from funcnn.core import VJP, LayerFn, State, bind, run
from funcnn.gradcheck import LeafCheck, VJPCheckError, check_vjp
from funcnn.layers import init_state
from funcnn.losses import Loss, loss_layer, softmax_loss, svm_loss
from funcnn.optim import Optimizer
from funcnn.training._objective import accuracy, l2_penalty, training_step
from funcnn.tree import PyTree, keystr, tree_leaves_with_path, tree_map

__all__ = ["DoctorCheck", "DoctorReport", "doctor"]

# The update-to-weight ratio (norm of one step's update over the weight's norm) cs231n asks for is
# about 1e-3; within RATIO_PASS it passes, within RATIO_WARN it warns, beyond it fails.
RATIO_PASS = (1e-4, 3e-2)
RATIO_WARN = (1e-6, 1e-1)


@dataclass(frozen=True)
class DoctorCheck:
    """One check: ``status`` "pass", "warn" or "fail"; ``measured`` and ``expected`` say why."""

    name: str
    status: str
    measured: str
    expected: str


@dataclass
class DoctorReport:
    """The checks :func:`doctor` ran, in order; ``ok`` when none failed. Prints as a table."""

    checks: list[DoctorCheck] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return all(check.status != "fail" for check in self.checks)

    def __getitem__(self, name: str) -> DoctorCheck:
        for check in self.checks:
            if check.name == name:
                return check
        raise KeyError(f"no check {name!r}; checks are {[check.name for check in self.checks]}")

    @override
    def __str__(self) -> str:
        width = max(len(check.name) for check in self.checks)
        measured = max(len(check.measured) for check in self.checks)
        lines = [f"  {'check':<{width}}  {'status':<6}  {'measured':<{measured}}  expected"]
        lines += [f"  {c.name:<{width}}  {c.status:<6}  {c.measured:<{measured}}  {c.expected}" for c in self.checks]
        failed = sum(check.status == "fail" for check in self.checks)
        warned = sum(check.status == "warn" for check in self.checks)
        return "\n".join(lines + [f"{failed} failed, {warned} warnings, {len(self.checks) - failed - warned} passed"])


def _band(value: float, inner: tuple[float, float], outer: tuple[float, float]) -> str:
    if inner[0] <= value <= inner[1]:
        return "pass"
    return "warn" if outer[0] <= value <= outer[1] else "fail"


@dataclass(frozen=True)
class _Setup:
    """The configuration under examination."""

    net: LayerFn
    loss: Loss
    optimizer: Optimizer
    params: PyTree
    state: State
    reg: float
    seed: int

    def objective(self, x: np.ndarray, y: np.ndarray, reg: float) -> float:
        """The loss ``fit`` minimizes, with L2 strength ``reg``, at the initial params (training mode)."""
        step = training_step(self.net, self.loss, reg, owner="doctor")
        return step(self.params, x, y, self.state, np.random.default_rng(self.seed))[0]

    def train(
        self, x: np.ndarray, y: np.ndarray, reg: float, steps: int, batch_size: int
    ) -> Iterator[tuple[PyTree, PyTree, State]]:
        """``(params before, params after, network state after)`` of each of ``steps`` optimizer steps on
        ``(x, y)`` (the state carries batch norm's running statistics, as ``fit`` does)."""
        step, rng = training_step(self.net, self.loss, reg), np.random.default_rng(self.seed)
        params, state, opt_state = self.params, self.state, self.optimizer.init(self.params)
        order = rng.permutation(len(x))
        for t in range(steps):
            batch = order[(t * batch_size) % len(x) :][:batch_size]
            _, grads, state = step(params, x[batch], y[batch], state, rng)
            before, (params, opt_state) = params, self.optimizer.update(grads, opt_state, params)
            yield before, params, state


def _initial_loss(setup: _Setup, x: np.ndarray, y: np.ndarray) -> DoctorCheck:
    value = setup.objective(x, y, 0.0)
    classes = int(run(setup.net, setup.params, x[:1], setup.state, train=False)[0].shape[1])
    targets: dict[Loss, tuple[float, str]] = {
        softmax_loss: (math.log(classes), f"log({classes})"),
        svm_loss: (classes - 1.0, f"{classes} - 1"),
    }
    expected = targets.get(setup.loss)
    if expected is None:
        return DoctorCheck("initial loss (reg 0)", "warn", f"{value:.4g}", "no expectation for this loss")
    target, formula = expected
    status = _band(value / target, (0.8, 1.25), (0.5, 2.0)) if np.isfinite(value) else "fail"
    return DoctorCheck("initial loss (reg 0)", status, f"{value:.4g}", f"near {formula} = {target:.4g} (x0.8..1.25)")


def _reg_raises_loss(setup: _Setup, x: np.ndarray, y: np.ndarray) -> DoctorCheck:
    strength = max(10 * setup.reg, 1.0)
    base, with_reg = setup.objective(x, y, 0.0), setup.objective(x, y, strength)
    measured, name = f"{base:.4g} -> {with_reg:.4g}", f"loss rises with reg {strength:g}"
    if l2_penalty(setup.params, 1.0)[0] == 0:
        return DoctorCheck(name, "warn", measured, "no weights named 'w' to regularize")
    return DoctorCheck(name, "pass" if with_reg > base else "fail", measured, "higher with reg")


def _with_loss(net: LayerFn, loss: Loss, y: np.ndarray) -> LayerFn:
    """``net`` followed by ``loss`` on labels ``y``: ``(params, x) -> (scalar loss, vjp)``, params as net's."""

    def apply(params: PyTree, x: np.ndarray) -> tuple[np.ndarray, VJP]:
        scores, net_vjp = net(params, x)
        value, loss_vjp = loss_layer(loss, y)((), scores)
        return value, lambda dvalue: net_vjp(loss_vjp(dvalue)[1])

    return apply


def _l2_term(reg: float) -> LayerFn:
    """The L2 penalty as a layer of params: ``(params, x) -> (penalty, vjp)``."""

    def apply(params: PyTree, x: np.ndarray) -> tuple[np.ndarray, VJP]:
        value, grads = l2_penalty(params, reg)
        return np.asarray(value), lambda dvalue: (tree_map(lambda g: g * dvalue, grads), np.zeros_like(x))

    return apply


def _gradient_check(name: str, f: LayerFn, setup: _Setup, x: np.ndarray) -> DoctorCheck:
    try:
        report = check_vjp(f, setup.params, x, seed=setup.seed, on_kink="ignore")
    except VJPCheckError as error:
        check = error.check
        located = check.located() if isinstance(check, LeafCheck) and check.n_checked else str(error).splitlines()[0]
        return DoctorCheck(name, "fail", located, "analytic = numeric")
    kinks = [leaf.path for leaf in report.kinks if leaf.path != "x"]
    measured = f"max rel error {report.max_rel_error:.1e}" + (f"; {', '.join(kinks)} at a kink" if kinks else "")
    kink_note = " (kinks: ReLU inputs at exactly 0, not checked)" if kinks else ""
    expected = f"<= {report.rtol:g} on every leaf{kink_note}"
    return DoctorCheck(name, "warn" if kinks else "pass", measured, expected)


def _gradient_checks(setup: _Setup, x: np.ndarray, y: np.ndarray) -> list[DoctorCheck]:
    strength = setup.reg if setup.reg > 0 else 1.0
    bound = bind(setup.net, setup.state, train=True, rng=np.random.default_rng(setup.seed))
    return [
        _gradient_check(f"gradient check: data loss ({len(x)} examples)", _with_loss(bound, setup.loss, y), setup, x),
        _gradient_check(f"gradient check: L2 term (reg {strength:g})", _l2_term(strength), setup, x),
    ]


def _overfit(setup: _Setup, x: np.ndarray, y: np.ndarray, max_steps: int) -> DoctorCheck:
    name, expected, acc = f"overfit {len(x)} examples", f"100% within {max_steps} steps", 0.0
    for t, (_, params, state) in enumerate(setup.train(x, y, 0.0, max_steps, len(x)), start=1):
        if t % 10 == 0 or t == max_steps:
            acc = accuracy(setup.net, params, x, y, state)
            if acc == 1.0:
                return DoctorCheck(name, "pass", f"100% train accuracy after {t} steps", expected)
    return DoctorCheck(name, "fail", f"{acc:.0%} train accuracy after {max_steps} steps", expected)


def _update_ratios(setup: _Setup, x: np.ndarray, y: np.ndarray, steps: int, batch_size: int) -> list[DoctorCheck]:
    *_, (before, after, _) = setup.train(x, y, setup.reg, steps, batch_size)
    checks = []
    for (path, new), (_, old) in zip(tree_leaves_with_path(after), tree_leaves_with_path(before)):
        if path and path[-1] == "w":
            old64 = np.asarray(old, np.float64)
            change = float(np.linalg.norm(np.asarray(new, np.float64) - old64))
            ratio = change / max(float(np.linalg.norm(old64)), 1e-300)
            status = _band(ratio, RATIO_PASS, RATIO_WARN) if np.isfinite(ratio) else "fail"
            expected = f"near 1e-3 ({RATIO_PASS[0]:g}..{RATIO_PASS[1]:g})"
            name = f"update/weight {keystr(path, 'params')}"
            checks.append(DoctorCheck(name, status, f"{ratio:.1e} after {steps} steps", expected))
    return checks


def doctor(
    net: LayerFn,
    params: PyTree,
    data: tuple[np.ndarray, np.ndarray],
    optimizer: Optimizer,
    *,
    loss: Loss = softmax_loss,
    reg: float = 0.0,
    batch_size: int = 50,
    state: State | None = None,
    subset: int = 30,
    overfit_steps: int = 200,
    ratio_steps: int = 5,
    seed: int = 0,
) -> DoctorReport:
    """Pre-flight checks of a training configuration on training data ``(x (N, ...), y (N,))``.

    - initial loss with reg 0 on up to 100 examples near log(C) (softmax) or C - 1 (svm);
    - the loss rising with regularization (L2 strength ``max(10 * reg, 1)``);
    - ``check_vjp`` of the whole network plus loss on 4 examples in float64, and of the L2 term;
    - ``subset`` examples overfit to 100% train accuracy within ``overfit_steps`` full-batch steps of
      ``optimizer`` (reg 0);
    - each weight's update-to-weight ratio after ``ratio_steps`` steps of ``batch_size`` at ``reg``:
      near 1e-3.

    ``params`` and ``data`` are not modified. Returns a :class:`DoctorReport` (``.ok``, prints as a table).

    Args:
        net: a network ``(params, x) -> (scores, vjp)``, moded or not.
        params: its params (not modified).
        data: ``(x, y)``: training examples and labels.
        optimizer: the update rule to judge.
        loss: ``loss(scores, y) -> (value, vjp)``.
        reg: the L2 strength on weights.
        batch_size: the minibatch size of the update-ratio steps.
        state: the network's state (default: its initial state).
        subset: how many examples the overfitting check uses.
        overfit_steps: how many full-batch steps it may take.
        ratio_steps: the steps before the update-to-weight ratios are measured.
        seed: draws the examples and batches.

    Returns:
        A :class:`DoctorReport`: one row per check, ``.ok`` when none failed.
    """
    x, y = data
    if len(x) != len(y) or len(x) < 4:
        raise ValueError(
            f"doctor: data must be (x, y) with the same number (>= 4) of examples, got {len(x)} and {len(y)}"
        )
    counts = {"subset": subset, "overfit_steps": overfit_steps, "ratio_steps": ratio_steps, "batch_size": batch_size}
    for name, count in counts.items():
        int_at_least("doctor", name, count, 1)
    state = init_state(net, x.shape[1:], x.dtype) if state is None else state
    setup = _Setup(net, loss, optimizer, params, state, number_at_least("doctor", "reg", reg, 0), seed)
    few = np.random.default_rng(seed).permutation(len(x))
    hundred, tiny = few[:100], few[:subset]
    return DoctorReport(
        [
            _initial_loss(setup, x[hundred], y[hundred]),
            _reg_raises_loss(setup, x[hundred], y[hundred]),
            *_gradient_checks(setup, x[few[:4]], y[few[:4]]),
            _overfit(setup, x[tiny], y[tiny], overfit_steps),
            *_update_ratios(setup, x, y, ratio_steps, batch_size),
        ]
    )
