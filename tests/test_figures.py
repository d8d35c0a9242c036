"""The dynamics figures (`lit_vir.analysis.figures`) read back from their artists: every point, line, image and
label against the data given (numpy), and the rendered array's size and type."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from matplotlib.colors import to_rgba
from matplotlib.font_manager import FontProperties
from matplotlib.layout_engine import ConstrainedLayoutEngine

from lit_vir.analysis.figures import figure_to_array, memory_figure, spectrum_figure, states_figure, topology_figure


def test_the_spectrum_shows_each_eigenvalue_the_unit_circle_and_the_circle_of_rho():
    eigenvalues = torch.tensor([0.5 + 0.5j, 0.5 - 0.5j, -0.8 + 0j, 0.1 + 0.2j])
    figure = spectrum_figure(eigenvalues, "title")
    (axes,) = figure.axes
    unit, radius = axes.lines
    angle = np.linspace(0.0, 2.0 * np.pi, 361)
    np.testing.assert_allclose(unit.get_xydata(), np.stack([np.cos(angle), np.sin(angle)], axis=1))
    np.testing.assert_allclose(radius.get_xydata(), 0.8 * np.stack([np.cos(angle), np.sin(angle)], axis=1), rtol=1e-6)
    assert unit.get_color() == "black" and unit.get_linewidth() == 1.0 and radius.get_linestyle() == "--"
    assert radius.get_color() == "tab:red" and radius.get_linewidth() == 1.0
    (points,) = axes.collections
    np.testing.assert_allclose(points.get_offsets(), [[0.5, 0.5], [0.5, -0.5], [-0.8, 0.0], [0.1, 0.2]], rtol=1e-6)
    assert points.get_sizes().tolist() == [4] and points.get_alpha() == 0.6
    assert [text.get_text() for text in axes.get_legend().get_texts()] == ["unit circle", "ρ = 0.800"]
    assert axes.get_legend()._loc == 1  # upper right, in small type
    assert {text.get_fontsize() for text in axes.get_legend().get_texts()} == {FontProperties(size="small").get_size()}
    assert axes.get_aspect() == 1.0 and (axes.get_xlabel(), axes.get_ylabel()) == ("Re λ", "Im λ")
    assert axes.get_title() == "title" and spectrum_figure(eigenvalues).axes[0].get_title() == "eigenvalues of W"
    assert tuple(figure.get_size_inches()) == (4.5, 4.5) and figure.dpi == 100
    assert isinstance(figure.get_layout_engine(), ConstrainedLayoutEngine)  # labels and colour bars never clipped


def test_the_states_are_an_image_of_tokens_by_nodes_coloured_from_minus_one_to_one():
    states = torch.linspace(-0.5, 0.25, 12).reshape(3, 4)  # (T, N): the colours still span [−1, 1]
    figure = states_figure(states, "one image")
    axes, bar = figure.axes
    (image,) = axes.images
    np.testing.assert_array_equal(image.get_array(), states.numpy())
    assert image.get_clim() == (-1.0, 1.0) and image.get_cmap().name == "RdBu_r"
    assert image.get_interpolation() == "nearest" and axes.get_aspect() == "auto"
    assert (axes.get_xlabel(), axes.get_ylabel(), axes.get_title()) == ("node", "token t", "one image")
    assert bar.get_ylabel() == "h" and tuple(figure.get_size_inches()) == (7.0, 3.5)
    assert states_figure(states).axes[0].get_title() == "reservoir states h_t"


def test_the_memory_curve_is_mc_k_against_k_with_the_total_in_the_title():
    per_delay = [0.99, 0.9, 0.5, 0.25, 0.05]
    figure = memory_figure(per_delay, "reservoir")
    (axes,) = figure.axes
    (line,) = axes.lines
    np.testing.assert_array_equal(line.get_xydata(), np.stack([np.arange(1, 6), per_delay], axis=1))  # float64
    assert axes.get_ylim() == (-0.02, 1.02)
    assert (axes.get_xlabel(), axes.get_ylabel()) == ("delay k", "MC_k = corr²")
    assert axes.get_title() == "reservoir: MC = 2.7"  # 0.99 + 0.9 + 0.5 + 0.25 + 0.05 = 2.69
    assert memory_figure(torch.tensor(per_delay)).axes[0].get_title() == "memory capacity: MC = 2.7"
    assert tuple(figure.get_size_inches()) == (5.0, 3.5)


def test_w_is_an_image_coloured_symmetrically_about_zero():
    weight = torch.tensor([[0.0, 0.6], [-0.3, 0.1]])  # the colours span ±0.6, not −0.3 … 0.6
    figure = topology_figure(weight, "W of core 0")
    axes, bar = figure.axes
    (image,) = axes.images
    np.testing.assert_array_equal(image.get_array(), weight.double().numpy())
    assert image.get_clim() == pytest.approx((-0.6, 0.6)) and image.get_cmap().name == "RdBu_r"
    assert image.get_interpolation() == "nearest"
    assert (axes.get_xlabel(), axes.get_ylabel(), axes.get_title()) == ("to node j", "from node i", "W of core 0")
    assert bar.get_ylabel() == "W_ij" and topology_figure(weight).axes[0].get_title() == "W"
    assert tuple(figure.get_size_inches()) == (5.0, 4.5)


@pytest.mark.parametrize(
    ("draw", "size"),
    [
        (lambda: spectrum_figure(torch.tensor([0.5 + 0j])), (450, 450)),
        (lambda: states_figure(torch.zeros(2, 2)), (350, 700)),
        (lambda: memory_figure([0.5]), (350, 500)),
        (lambda: topology_figure(torch.eye(2)), (450, 500)),
    ],
)
def test_a_figure_renders_to_an_rgb_array_of_its_size_in_pixels(draw, size):
    pixels = figure_to_array(draw())
    assert pixels.shape == (*size, 3) and pixels.dtype == np.uint8
    assert tuple(pixels[0, 0]) == tuple(int(255 * channel) for channel in to_rgba("white")[:3])  # the background
    assert pixels.flags.owndata  # a copy, not a view of the canvas's buffer
