"""Saliency maps against finite differences, the course's filter grid, and the pictures drawn."""

import sys

import numpy as np
import pytest
from bounds import assert_within, central_difference_error, layer_terms, moved_magnitude

import funcnn as fn
from funcnn.analysis import class_score_gradient, saliency
from funcnn.plot import filter_grid, plot_activation_maps, plot_filters, plot_saliency


def small_convnet(rng, dtype=np.float64, **options):
    net = fn.nets.three_layer_convnet(num_filters=3, filter_size=3, hidden_dim=6, num_classes=4, **options)
    _, params = fn.init_params(net, rng, (2, 6, 6), dtype)
    return net, params


def difference_error(net, params, x, y, gradient):
    """How far the central difference of the correct scores' sum can be from the exact gradient (tests/bounds.py):
    piecewise linear away from kinks, so rounding only; the convnet's outputs are sums of at most 54 products
    along its layers (conv 2 * 9 + 1, affine 27 + 1, affine 6 + 1)."""
    onehot = np.zeros((len(y), 4))
    onehot[np.arange(len(y)), y] = 1
    magnitude = moved_magnitude(lambda z: net(params, z)[0], x, onehot, layer_terms(net, params, x))
    return central_difference_error(magnitude, 54, x, gradient)


def test_class_score_gradient_equals_finite_differences():
    rng = np.random.default_rng(0)
    net, params = small_convnet(rng)
    x, y = rng.standard_normal((3, 2, 6, 6)), np.array([0, 3, 1])

    def correct_scores(images):
        scores, _ = net(params, images)
        return scores[np.arange(3), y].sum()

    gradient = class_score_gradient(net, params, x, y)
    assert gradient.shape == x.shape
    assert_within(gradient, fn.numerical_gradient(correct_scores, x), difference_error(net, params, x, y, gradient))
    np.testing.assert_array_equal(saliency(net, params, x, y), np.abs(gradient).max(axis=1))


def test_saliency_uses_evaluation_mode_and_the_state():
    rng = np.random.default_rng(1)
    net, params = small_convnet(rng, batch_norm=True, dropout=0.5)
    state = fn.tree.tree_map(lambda a: a + 0.5, fn.init_state(net, (2, 6, 6), np.float64))
    x, y = rng.standard_normal((2, 2, 6, 6)), np.array([2, 1])
    eval_net = fn.bind(net, state, train=False)

    def correct_scores(images):
        return eval_net(params, images)[0][np.arange(2), y].sum()

    gradient = class_score_gradient(net, params, x, y, state)
    # for the terms' magnitude, batch norm in evaluation mode is |gamma| (|x| + |mean|) / sqrt(var + eps) + |beta|
    magnitude_state = tuple({**s, "running_mean": -np.abs(s["running_mean"])} if s else s for s in state)
    bound = difference_error(fn.bind(net, magnitude_state, train=False), params, x, y, gradient)
    assert_within(gradient, fn.numerical_gradient(correct_scores, x), bound)


def test_saliency_float32_keeps_dtype_and_refuses_bad_labels():
    rng = np.random.default_rng(2)
    net, params = small_convnet(rng, np.float32)
    x = rng.standard_normal((2, 2, 6, 6)).astype(np.float32)
    assert saliency(net, params, x, np.array([0, 1])).dtype == np.float32
    with pytest.raises(ValueError, match=r"saliency: y must be \(2,\) integer labels in \[0, 4\)"):
        saliency(net, params, x, np.array([0, 4]))
    with pytest.raises(ValueError, match="saliency: y must be"):
        saliency(net, params, x, np.array([0]))


def test_filter_grid_is_the_courses_visualize_grid():
    w = np.arange(5 * 2 * 3 * 3, dtype=float).reshape(5, 2, 3, 3) ** 2
    w[4] = 7.0  # a constant filter is drawn as 0
    grid = filter_grid(w, ubound=10.0, padding=2)
    assert grid.shape == (3 * 3 + 2 * 2, 3 * 3 + 2 * 2, 2)
    tile = w[3].transpose(1, 2, 0)
    np.testing.assert_allclose(grid[5:8, 0:3], 10 * (tile - tile.min()) / (tile.max() - tile.min()))
    np.testing.assert_array_equal(grid[5:8, 5:8], 0)
    assert grid[3:5].max() == 0 and grid[:, 3:5].max() == 0  # the padding
    assert grid[0:3, 0:3].min() == 0 and grid[0:3, 0:3].max() == 10


def test_pictures_draw_one_panel_per_filter_map_and_image():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rng = np.random.default_rng(3)
    net, params = small_convnet(rng)
    x = rng.standard_normal((2, 2, 6, 6))
    fig = plot_filters(params[0]["w"])
    assert fig.axes[0].images[0].get_array().shape == (2 * 3 + 1, 2 * 3 + 1)
    first_block = fn.conv_relu_pool({"stride": 1, "pad": 1})  # the net's first layer
    fig = plot_activation_maps(first_block, params[0], x[0], columns=2)
    drawn = [ax.images[0].get_array() for ax in fig.axes if ax.images]
    expected, _ = first_block(params[0], x[:1])
    np.testing.assert_array_equal(np.stack(drawn), expected[0])
    maps = saliency(net, params, x, np.array([0, 1]))
    fig = plot_saliency(x, maps, ["a", "b"])
    assert [ax.get_title() for ax in fig.axes[:2]] == ["a", "b"]
    np.testing.assert_array_equal(fig.axes[2].images[0].get_array(), maps[0])
    plt.close("all")


def test_a_missing_matplotlib_names_the_plot_extra(monkeypatch):
    monkeypatch.setitem(sys.modules, "matplotlib", None)
    monkeypatch.setitem(sys.modules, "matplotlib.pyplot", None)
    with pytest.raises(ImportError, match=r"funcnn\[plot\]"):
        plot_filters(np.ones((1, 1, 3, 3)))
