"""Networks, init, value_and_grad, L2, fit, checkpoints and the train command."""

import numpy as np
import pytest
from bounds import LIBM_ULPS, central_difference_error, course_rel_error_bound, layer_terms
from fitting import DIGITS, small_fit, small_net
from test_data import make_mnist

import funcnn as fn
from funcnn.app.cli import main
from funcnn.layers import init_params
from funcnn.nets import fc_net, three_layer_convnet, two_layer_net
from funcnn.optim import adam, sgd
from funcnn.training import accuracy, fit, l2_penalty, load_checkpoint, save_checkpoint, value_and_grad, with_l2
from funcnn.tree import tree_allclose, tree_leaves, tree_map


def small_net_and_params(seed=0, dtype=np.float64):
    net = small_net(filters=4, hidden=16)
    return net, init_params(net, np.random.default_rng(seed), (1, 8, 8), dtype)[1]


def test_init_infers_shapes_through_chains_and_sandwiches():
    net = three_layer_convnet(num_filters=6, filter_size=5, hidden_dim=20, num_classes=7)
    out_shape, params = init_params(net, np.random.default_rng(0), (3, 12, 10))
    assert out_shape == (7,)
    shapes = tree_map(lambda a: a.shape, params)
    assert shapes == ({"w": (6, 3, 5, 5), "b": (6,)}, {"w": (6 * 6 * 5, 20), "b": (20,)}, {"w": (20, 7), "b": (7,)})
    assert all(leaf.dtype == np.float32 for leaf in tree_leaves(params))
    y, _ = net(params, np.zeros((2, 3, 12, 10), np.float32))
    assert y.shape == (2, 7)
    assert init_params(fc_net((5, 4), 3), np.random.default_rng(0), (2, 3))[0] == (3,)


def test_he_and_fixed_weight_scales():
    _, he = init_params(fn.dense(500), np.random.default_rng(0), (800,), np.float64)
    # a sample std of 400,000 normal draws is within 1 / sqrt(2 n) = 1.1e-3 of sigma per standard error:
    # 0.02 is 18 of them (NumPy's seeded stream is the same on every machine)
    assert he["w"].std() == pytest.approx(np.sqrt(2 / 800), rel=0.02)
    assert not he["b"].any()
    _, fixed = init_params(fn.dense(500), np.random.default_rng(0), (800,), np.float64, weight_scale=1e-3)
    assert fixed["w"].std() == pytest.approx(1e-3, rel=0.02)
    with pytest.raises(ValueError, match="weight_scale must be 'he' or a positive number"):
        init_params(fn.dense(5), np.random.default_rng(0), (8,), weight_scale=-1.0)


def test_init_explains_a_layer_without_sizes():
    with pytest.raises(TypeError, match=r"affine has no init.*fn.dense\(out_dim\)"):
        init_params(fn.chain(fn.affine, fn.relu), np.random.default_rng(0), (4,))


def test_value_and_grad_matches_finite_differences():
    net, params = small_net_and_params()
    x, y = DIGITS.train.x[:6], DIGITS.train.y[:6]
    objective = with_l2(value_and_grad(net), reg=0.1)
    value, grads = objective(params, x, y)
    w = params[2]["w"]
    numeric = fn.numerical_gradient(
        lambda v: objective((params[0], params[1], {"w": v, "b": params[2]["b"]}), x, y)[0], w
    )
    # the central difference's error (tests/bounds.py): the scores' terms (the net on absolute values) through
    # a softmax (log-sum-exp of 10, exp and log within LIBM_ULPS) averaged over 6, plus the L2 term; along the
    # path conv 1 * 9 + 1, affine 64 + 1, affine 16 + 1 and softmax 10: 102 sums; softmax's third derivative < 0.1
    l2 = 0.5 * 0.1 * sum(float(np.sum(p["w"] ** 2)) for p in params)
    magnitude = float(np.abs(layer_terms(net, params, x)).max() * 3 + np.log(10)) + l2
    error = central_difference_error(magnitude, 102 + 2 * LIBM_ULPS, w, grads[2]["w"], truncation=1e-10 / 6 * 0.1)
    assert fn.rel_error(grads[2]["w"], numeric) <= course_rel_error_bound(grads[2]["w"], error)
    assert value == pytest.approx(value_and_grad(net)(params, x, y)[0] + l2_penalty(params, 0.1)[0])


def test_l2_penalty_touches_weights_only():
    params = ({"w": np.array([1.0, 2.0]), "b": np.array([3.0])}, (), {"w": np.array([[2.0]]), "b": np.array([5.0])})
    value, grads = l2_penalty(params, 0.5)
    assert value == pytest.approx(0.5 * 0.5 * (1 + 4 + 4))
    np.testing.assert_array_equal(grads[0]["w"], [0.5, 1.0])
    np.testing.assert_array_equal(grads[2]["b"], [0.0])
    with pytest.raises(ValueError, match="reg must be >= 0"):
        with_l2(value_and_grad(fn.relu), -1.0)


def test_initial_softmax_loss_is_about_log_of_the_class_count():
    net = two_layer_net(hidden_dim=50, num_classes=10)
    _, params = init_params(net, np.random.default_rng(0), (1, 8, 8), np.float64, weight_scale=1e-3)
    loss, _ = value_and_grad(net)(params, DIGITS.train.x[:100], DIGITS.train.y[:100])
    assert loss == pytest.approx(np.log(10), abs=0.01)


def test_a_small_net_overfits_fifty_images():
    net = three_layer_convnet(num_filters=8, filter_size=3, hidden_dim=50, num_classes=10)
    _, params = init_params(net, np.random.default_rng(0), (1, 8, 8), np.float64)
    x, y = DIGITS.train.x[:50], DIGITS.train.y[:50]
    result = fit(net, params, (x, y), (x, y), adam(3e-3), epochs=40, batch_size=10, log=None)  # 200 steps
    assert result.history.train_acc_history[-1] == 1.0
    assert result.history.loss_history[-1] < 0.1 * result.history.loss_history[0]


def run(seed=0, epochs=2, **kwargs):
    return small_fit(epochs, n=200, n_val=100, net=small_net(filters=4, hidden=16), batch_size=32, seed=seed, **kwargs)


def test_fit_is_reproducible_and_pure():
    _, params = small_net_and_params()
    before = tree_map(np.copy, params)
    a, b, c = run(seed=3, params=params), run(seed=3), run(seed=4)
    assert tree_allclose(a.params, b.params, rtol=0, atol=0)
    assert a.history.loss_history == b.history.loss_history
    assert not tree_allclose(a.params, c.params)
    assert tree_allclose(params, before, rtol=0, atol=0)


def test_fit_keeps_history_with_the_course_names_and_best_params():
    result = run(epochs=3)
    h = result.history
    assert len(h.loss_history) == 3 * 7 and len(h.train_acc_history) == len(h.val_acc_history) == 3
    assert h.best_val_acc == max(h.val_acc_history)
    net, _ = small_net_and_params()
    assert accuracy(net, result.best_params, DIGITS.val.x[:100], DIGITS.val.y[:100]) == h.best_val_acc


def test_fit_prints_a_readable_progress_line():
    lines = []
    net, params = small_net_and_params()
    fit(
        net,
        params,
        (DIGITS.train.x[:64], DIGITS.train.y[:64]),
        (DIGITS.val.x[:10], DIGITS.val.y[:10]),
        sgd(0.01),
        epochs=2,
        batch_size=32,
        log=lines.append,
    )
    assert len(lines) == 2
    assert lines[1].startswith("epoch 2/2  loss ")
    for part in ("train acc", "val acc", "img/s", "left 0:00"):
        assert part in lines[1]


def test_resume_continues_the_same_run(tmp_path):
    straight = run(epochs=4)
    ckpt = tmp_path / "ckpt.npz"
    run(epochs=2, checkpoint=ckpt)
    resumed = run(epochs=4, checkpoint=ckpt, resume=True)
    assert tree_allclose(resumed.params, straight.params, rtol=0, atol=0)
    assert resumed.history.loss_history == straight.history.loss_history
    assert resumed.history.val_acc_history == straight.history.val_acc_history
    assert resumed.opt_state["t"] == straight.opt_state["t"]


def test_checkpoint_round_trip_and_mismatch(tmp_path):
    tree = {"params": ({"w": np.arange(6.0).reshape(2, 3), "b": np.zeros(3, np.float32)}, ()), "epoch": np.asarray(3)}
    path = save_checkpoint(tmp_path / "c.npz", tree)
    back = load_checkpoint(path, tree)
    assert tree_allclose(back, tree, rtol=0, atol=0)
    assert back["params"][0]["b"].dtype == np.float32
    with np.load(path, allow_pickle=False) as data:
        assert sorted(data.files) == ["epoch", "params/0/b", "params/0/w"]
    with pytest.raises(ValueError, match=r"missing \['params/0/v'\], unexpected \['params/0/w'\]"):
        load_checkpoint(path, {"params": ({"v": np.zeros((2, 3)), "b": np.zeros(3)}, ()), "epoch": np.asarray(0)})
    with pytest.raises(ValueError, match=r"'params/0/w' has shape \(2, 3\), expected \(3, 2\)"):
        load_checkpoint(path, {"params": ({"w": np.zeros((3, 2)), "b": np.zeros(3)}, ()), "epoch": np.asarray(0)})
    with pytest.raises(TypeError, match="holds Python objects"):
        save_checkpoint(tmp_path / "o.npz", {"x": np.array([{}], dtype=object)})


def test_a_crash_mid_save_keeps_the_previous_checkpoint(tmp_path, monkeypatch):
    path = save_checkpoint(tmp_path / "c.npz", {"w": np.ones(3)})

    def crash(f, **arrays):
        f.write(b"partial")
        raise KeyboardInterrupt

    monkeypatch.setattr(np, "savez", crash)
    with pytest.raises(KeyboardInterrupt):
        save_checkpoint(path, {"w": np.zeros(3)})
    monkeypatch.undo()
    np.testing.assert_array_equal(load_checkpoint(path, {"w": np.zeros(3)})["w"], np.ones(3))
    assert [p.name for p in tmp_path.iterdir()] == ["c.npz"]


def test_train_command_writes_checkpoint_history_and_plot(tmp_path, capsys):
    assert main(["train", "--epochs", "2", "--filters", "4", "--hidden", "16", "--out", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert "epoch 2/2" in out and "test accuracy 0." in out
    assert (tmp_path / "checkpoint.npz").exists() and (tmp_path / "history.json").exists()
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        assert "pip install" in out
    else:
        assert (tmp_path / "training.png").read_bytes()[:4] == b"\x89PNG"


def test_train_command_reads_mnist_files(tmp_path, capsys):
    make_mnist(tmp_path, "train", 40, gz=True, seed=0)
    make_mnist(tmp_path, "test", 10, gz=False, seed=1)
    args = [
        "train",
        "--dataset",
        "mnist",
        "--data-path",
        str(tmp_path),
        "--epochs",
        "1",
        "--filters",
        "2",
        "--hidden",
        "8",
        "--out",
        str(tmp_path / "run"),
    ]
    assert main(args) == 0
    assert "36 train, 4 val, 10 test images of shape (1, 28, 28)" in capsys.readouterr().out


def test_train_command_explains_a_missing_data_path(capsys):
    assert main(["train", "--dataset", "mnist"]) == 2
    assert "give the folder holding its files (--data-path)" in capsys.readouterr().err


def test_accuracy_rejects_labels_of_the_wrong_shape():
    with pytest.raises(
        ValueError, match=r"accuracy: labels y must have shape \(3,\) to match x of shape \(3, 3\), got \(3, 1\)"
    ):
        accuracy(fn.identity, (), np.eye(3), np.array([[0], [1], [2]]))
    assert accuracy(fn.identity, (), np.eye(3), np.array([0, 1, 2])) == 1.0


def test_convnet_and_conv_sizes_are_checked():
    with pytest.raises(ValueError, match="filter_size must be odd"):
        three_layer_convnet(filter_size=4)
    with pytest.raises(
        TypeError,
        match=r"conv\(stride=1, pad=0, filters=2, kernel_size=\(3, 3, 3\)\): kernel_size must be an int or a pair",
    ):
        fn.conv(filters=2, kernel_size=(3, 3, 3))


def test_help_lists_the_options(capsys):
    assert main(["train", "--help"]) == 0
    text = capsys.readouterr().out
    for option in (
        "--epochs",
        "--batch-size",
        "--lr",
        "--optimizer",
        "--seed",
        "--dataset",
        "--data-path",
        "--out",
        "--patience",
    ):
        assert option in text


def test_doctor_takes_the_network_and_data_options_and_refuses_the_runs(capsys):
    assert main(["doctor", "--help"]) == 0
    text = capsys.readouterr().out
    for option in (
        "--batch-size",
        "--lr",
        "--reg",
        "--optimizer",
        "--seed",
        "--dataset",
        "--filters",
        "--weight-scale",
    ):
        assert option in text
    for option in ("--epochs", "--out", "--resume", "--patience", "--lr-decay"):  # it would ignore them
        assert option not in text
        assert main(["doctor", option, "1"]) == 2
        assert "unrecognized arguments" in capsys.readouterr().err


def test_one_training_step_serves_value_and_grad_with_l2_and_fit():
    net, params = small_net_and_params()
    x, y = DIGITS.train.x[:6], DIGITS.train.y[:6]
    value, grads, state = fn.training_step(net, reg=0.1)(params, x, y)
    same_value, same_grads = with_l2(value_and_grad(net), 0.1)(params, x, y)
    assert value == same_value and tree_allclose(grads, same_grads, rtol=0, atol=0) and state == ()
    asked = []

    @fn.skips_dx
    def first_vjp(dy, need_dx=True):
        asked.append(need_dx)
        return (), (dy if need_dx else None)

    first = fn.layer(lambda p, x: (x, first_vjp), "first")
    value_and_grad(fn.chain(first, fn.affine))(((), params[2]), np.ones((2, 16)), np.array([0, 1]))
    fn.training_step(fn.chain(first, fn.affine))(((), params[2]), np.ones((2, 16)), np.array([0, 1]))
    assert asked == [False, False]  # nobody needs the data's gradient


def test_reg_is_checked_once_naming_who_was_called():
    net, _ = small_net_and_params()
    for call, owner in (
        (lambda: with_l2(value_and_grad(net), -1.0), "with_l2"),
        (lambda: fn.training_step(net, reg=float("nan")), "training_step"),
        (lambda: run(reg=-0.5), "fit"),
    ):
        with pytest.raises(ValueError, match=f"{owner}: reg must be >= 0 and finite"):
            call()


def test_value_and_grad_of_a_moded_net_says_to_bind_it():
    net = fn.chain(fn.dense(4), fn.dropout(0.5), fn.dense(3))
    with pytest.raises(TypeError, match=r"value_and_grad: chain.* needs a mode and a state; pass fn.bind"):
        value_and_grad(net)


def test_fit_refuses_the_former_checkpoint_arguments(tmp_path):
    net, params = small_net_and_params()
    data = (DIGITS.train.x[:20], DIGITS.train.y[:20])
    with pytest.raises(TypeError, match="unexpected keyword argument 'resume'"):
        fit(net, params, data, data, sgd(0.05), checkpoint=tmp_path / "c.npz", resume=True)  # type: ignore[call-arg]
