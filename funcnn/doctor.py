"""``doctor``: cs231n's checks before a long training run ("babysitting the learning process").

Each check passes, warns or fails with the numbers behind it: the initial loss, the loss rising with
regularization, the whole network's gradient (data loss and L2 term apart), overfitting a tiny
subset, and the update-to-weight ratio per weight after a few steps at the chosen learning rate.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

from funcnn.gradcheck import VJPCheckError, check_vjp
from funcnn.init import init_state
from funcnn.layer import VJP, Apply, State, bind, run
from funcnn.losses import Loss, loss_layer, softmax_loss, svm_loss
from funcnn.optim import Optimizer
from funcnn.train import _training_step, accuracy, l2_penalty
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


def _loss(net: Apply, loss: Loss, params: PyTree, x: np.ndarray, y: np.ndarray, state: State, seed: int) -> tuple[float, int]:
    scores, _, _ = run(net, params, x, state, train=True, rng=np.random.default_rng(seed))
    return float(loss(scores, y)[0]), scores.shape[1]


def _initial_loss(net: Apply, loss: Loss, params: PyTree, x: np.ndarray, y: np.ndarray, state: State, seed: int) -> DoctorCheck:
    value, classes = _loss(net, loss, params, x, y, state, seed)
    expected = {softmax_loss: (math.log(classes), f"log({classes})"), svm_loss: (classes - 1.0, f"{classes} - 1")}.get(loss)
    if expected is None:
        return DoctorCheck("initial loss (reg 0)", "warn", f"{value:.4g}", "no expectation for this loss")
    target, formula = expected
    status = _band(value / target, (0.8, 1.25), (0.5, 2.0)) if np.isfinite(value) else "fail"
    return DoctorCheck("initial loss (reg 0)", status, f"{value:.4g}", f"near {formula} = {target:.4g} (x0.8..1.25)")


def _reg_raises_loss(net: Apply, loss: Loss, params: PyTree, x: np.ndarray, y: np.ndarray, state: State, reg: float, seed: int) -> DoctorCheck:
    """The training objective (what ``fit`` minimizes) with reg 0 and with a large reg."""
    strength = max(10 * reg, 1.0)
    base, with_reg = (_training_step(net, loss, r)(params, x, y, state, np.random.default_rng(seed))[0] for r in (0.0, strength))
    name = f"loss rises with reg {strength:g}"
    if l2_penalty(params, 1.0)[0] == 0:
        return DoctorCheck(name, "warn", f"{base:.4g} -> {with_reg:.4g}", "no weights named 'w' to regularize")
    return DoctorCheck(name, "pass" if with_reg > base else "fail", f"{base:.4g} -> {with_reg:.4g}", "higher with reg")


def _with_loss(net: Apply, loss: Loss, y: np.ndarray) -> Apply:
    """``net`` followed by ``loss`` on labels ``y``: ``(params, x) -> (scalar loss, vjp)``, params as net's."""

    def apply(params: PyTree, x: np.ndarray) -> tuple[np.ndarray, VJP]:
        scores, net_vjp = net(params, x)
        value, loss_vjp = loss_layer(loss, y)((), scores)
        return value, lambda dvalue: net_vjp(loss_vjp(dvalue)[1])

    return apply


def _l2_term(reg: float) -> Apply:
    """The L2 penalty as a layer of params: ``(params, x) -> (penalty, vjp)``."""

    def apply(params: PyTree, x: np.ndarray) -> tuple[np.ndarray, VJP]:
        value, grads = l2_penalty(params, reg)
        return np.asarray(value), lambda dvalue: (tree_map(lambda g: g * dvalue, grads), np.zeros_like(x))

    return apply


def _gradient_checks(net: Apply, loss: Loss, params: PyTree, x: np.ndarray, y: np.ndarray, state: State, reg: float, seed: int) -> list[DoctorCheck]:
    strength = reg if reg > 0 else 1.0
    data_loss = _with_loss(bind(net, state, train=True, rng=np.random.default_rng(seed)), loss, y)
    checks = []
    for name, f in ((f"gradient check: data loss ({len(x)} examples)", data_loss), (f"gradient check: L2 term (reg {strength:g})", _l2_term(strength))):
        try:
            report = check_vjp(f, params, x, seed=seed, on_kink="ignore")
        except VJPCheckError as error:
            located = error.check.located() if error.check is not None and error.check.n_checked else str(error).splitlines()[0]
            checks.append(DoctorCheck(name, "fail", located, "analytic = numeric"))
            continue
        kinks = [leaf.path for leaf in report.kinks if leaf.path != "x"]
        measured = f"max rel error {report.max_rel_error:.1e}" + (f"; {', '.join(kinks)} at a kink" if kinks else "")
        expected = f"<= {report.rtol:g} on every leaf" + (" (kinks: ReLU inputs at exactly 0, not checked)" if kinks else "")
        checks.append(DoctorCheck(name, "warn" if kinks else "pass", measured, expected))
    return checks


def _overfit(net: Apply, loss: Loss, optimizer: Optimizer, params: PyTree, x: np.ndarray, y: np.ndarray, state: State, max_steps: int, seed: int) -> DoctorCheck:
    step = _training_step(net, loss, 0.0)
    opt_state, rng = optimizer.init(params), np.random.default_rng(seed)
    acc = 0.0
    for t in range(1, max_steps + 1):
        _, grads, state = step(params, x, y, state, rng)
        params, opt_state = optimizer.update(grads, opt_state, params)
        if t % 10 == 0 or t == max_steps:
            acc = accuracy(net, params, x, y, state)
            if acc == 1.0:
                return DoctorCheck(f"overfit {len(x)} examples", "pass", f"100% train accuracy after {t} steps", f"100% within {max_steps} steps")
    return DoctorCheck(f"overfit {len(x)} examples", "fail", f"{acc:.0%} train accuracy after {max_steps} steps", f"100% within {max_steps} steps")


def _update_ratios(net: Apply, loss: Loss, optimizer: Optimizer, params: PyTree, x: np.ndarray, y: np.ndarray, state: State, reg: float, batch_size: int, steps: int, seed: int) -> list[DoctorCheck]:
    step = _training_step(net, loss, reg)
    opt_state, rng = optimizer.init(params), np.random.default_rng(seed)
    order = rng.permutation(len(x))
    before = params
    for t in range(steps):
        batch = order[(t * batch_size) % len(x) :][:batch_size]
        _, grads, state = step(params, x[batch], y[batch], state, rng)
        before = params
        params, opt_state = optimizer.update(grads, opt_state, params)
    checks = []
    for (path, new), (_, old) in zip(tree_leaves_with_path(params), tree_leaves_with_path(before)):
        if not path or path[-1] != "w":
            continue
        old64 = np.asarray(old, np.float64)
        ratio = float(np.linalg.norm(np.asarray(new, np.float64) - old64) / max(np.linalg.norm(old64), 1e-300))
        status = _band(ratio, RATIO_PASS, RATIO_WARN) if np.isfinite(ratio) else "fail"
        checks.append(DoctorCheck(f"update/weight {keystr(path, 'params')}", status, f"{ratio:.1e} after {steps} steps", f"near 1e-3 ({RATIO_PASS[0]:g}..{RATIO_PASS[1]:g})"))
    return checks


def doctor(
    net: Apply,
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
    """
    x, y = data
    if len(x) != len(y) or len(x) < 4:
        raise ValueError(f"doctor: data must be (x, y) with the same number (>= 4) of examples, got {len(x)} and {len(y)}")
    if subset < 1 or overfit_steps < 1 or ratio_steps < 1 or batch_size < 1:
        raise ValueError(f"doctor: subset, overfit_steps, ratio_steps and batch_size must be >= 1, got {subset}, {overfit_steps}, {ratio_steps}, {batch_size}")
    if state is None:
        state = init_state(net, x.shape[1:], x.dtype)
    few = np.random.default_rng(seed).permutation(len(x))
    report = DoctorReport()
    report.checks.append(_initial_loss(net, loss, params, x[few[:100]], y[few[:100]], state, seed))
    report.checks.append(_reg_raises_loss(net, loss, params, x[few[:100]], y[few[:100]], state, reg, seed))
    report.checks += _gradient_checks(net, loss, params, x[few[:4]], y[few[:4]], state, reg, seed)
    report.checks.append(_overfit(net, loss, optimizer, params, x[few[:subset]], y[few[:subset]], state, overfit_steps, seed))
    report.checks += _update_ratios(net, loss, optimizer, params, x, y, state, reg, batch_size, ratio_steps, seed)
    return report
