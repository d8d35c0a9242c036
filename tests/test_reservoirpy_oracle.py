"""reservoirpy (a test dependency only; lit_vir never imports it) as an independent oracle of the reservoir, the
ridge readout, the spectral radius and the memory capacity, for every topology.

Conventions, read in reservoirpy 0.4.2's source (`nodes/reservoir.py`, `nodes/ridge.py`, `observables.py`):
- reservoirpy runs column vectors, x[t+1] = (1 − lr)·x[t] + lr·tanh(W·x[t] + Win·u[t+1] + bias), so its W is
  lit_vir's Wᵀ (here W[i, j] is the link i → j, h_t = …tanh(h_{t−1}·W + x_t·V + b)) and its Win is Vᵀ; arrays
  given to its `Reservoir` are used as they are (no spectral radius or input scaling is applied to them), and its
  bias is added as given (shape (N,));
- `Ridge(ridge=β, fit_bias=True)` centres features and targets and solves (XᵀX + β·I)·W = XᵀY, b = ȳ − x̄·W:
  lit_vir's readout with an absolute β (lit_vir takes a relative λ, β = λ·tr(Σ)/F: `NormalEquations.penalty`);
- `spectral_radius` is max |eig(W)| (scipy's dense solver for a dense W): the same definition;
- `memory_capacity` uses one series, fits on its first 80% after a k_max warm-up and tests on the rest from the
  state the fit left, with an absolute ridge; lit_vir's restarts independent sequences from h = 0 after a washout,
  with a relative ridge. Both estimate Σ_k corr²(u(t−k), y_k(t)); they agree to their sampling error, not exactly.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from lit_vir.analysis.drives import scalar_input_vector
from lit_vir.analysis.memory import memory_capacity
from lit_vir.analysis.spectrum import eigenvalue_spectrum, spectral_radius
from lit_vir.models.reservoir import Reservoir
from lit_vir.models.reservoir_options import TOPOLOGIES, ReservoirOptions
from lit_vir.models.ridge import NormalEquations
from lit_vir.models.topology import delay_line, recurrent_matrix, ring, ring_lattice

reservoirpy = pytest.importorskip("reservoirpy")
from reservoirpy import mat_gen, observables  # noqa: E402
from reservoirpy.nodes import Reservoir as ReservoirpyReservoir  # noqa: E402
from reservoirpy.nodes import Ridge  # noqa: E402

OPTIONS = {"num_nodes": 24, "jump_size": 5, "density": 0.2, "degree": 4}


@pytest.fixture
def float64_default():
    """Build lit_vir's reservoir with float64 buffers, so the comparison is not limited by float32."""
    previous = torch.get_default_dtype()
    torch.set_default_dtype(torch.float64)
    yield
    torch.set_default_dtype(previous)


def reservoirpy_states(weight, inputs, bias, leak_rate: float, tokens: np.ndarray) -> np.ndarray:
    """States (B, T, N) of reservoirpy's Reservoir given lit_vir's W (N, N), V (D, N), b (N,): transposed to its
    column convention, one fresh node per sequence (h_0 = 0)."""
    sequences = []
    for sequence in tokens:
        node = ReservoirpyReservoir(W=weight.T.copy(), Win=inputs.T.copy(), bias=bias.copy(), lr=leak_rate)
        sequences.append(node.run(sequence))
    return np.stack(sequences)


@pytest.mark.parametrize("name", TOPOLOGIES)
def test_reservoirpy_runs_the_same_states_for_every_topology(name, float64_default):
    reservoir = Reservoir(6, topology=name, leak_rate=0.6, bias_scaling=0.4, signed_input=True, seed=3, **OPTIONS)
    tokens = torch.randn(3, 15, 6, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    with torch.no_grad():
        ours = reservoir(tokens)[0].numpy()  # (B, T, N)
    weight, inputs, bias = (tensor[0].numpy() for tensor in (reservoir.weight, reservoir.input_weight, reservoir.bias))
    theirs = reservoirpy_states(weight, inputs, bias, 0.6, tokens.numpy())
    assert ours.dtype == np.float64
    np.testing.assert_allclose(ours, theirs, rtol=0, atol=1e-10)
    assert np.abs(ours).max() > 0.1  # states that moved: the comparison is not of zeros


def test_ring_and_delay_line_are_reservoirpys_transposed():
    """reservoirpy's `ring` and `line` are lower shift matrices in its column convention (x_{i+1} ← x_i): the
    transpose of lit_vir's W[i, i+1], the same flow of activity."""
    np.testing.assert_array_equal(ring(9).numpy(), mat_gen.ring(9, 9, sparsity_type="dense").T)
    np.testing.assert_array_equal(delay_line(9).numpy(), mat_gen.line(9, 9, sparsity_type="dense").T)


def test_small_world_lattice_is_reservoirpys_without_rewiring():
    theirs = mat_gen.small_world(20, 20, nb_close_neighbours=6, proba_rewire=0.0, sparsity_type="dense", seed=0)
    np.testing.assert_array_equal(ring_lattice(20, 6).numpy(), np.asarray(theirs) != 0)


def test_reservoirpy_ridge_gives_the_readout_weights_on_the_same_states(float64_default):
    reservoir = Reservoir(4, topology="small_world", bias_scaling=0.2, seed=1, **OPTIONS)
    generator = torch.Generator().manual_seed(2)
    tokens = torch.randn(200, 10, 4, generator=generator, dtype=torch.float64)
    labels = torch.randint(0, 5, (200,), generator=generator)
    with torch.no_grad():
        states = reservoir(tokens)[0]  # (B, T, N)
    features = torch.cat([tokens, states], dim=-1).mean(dim=1)  # [x_t ; h_t] mean-pooled: (B, D + N)
    equations = NormalEquations(features.shape[1], 5)
    for rows in (slice(0, 64), slice(64, 200)):
        equations.add(features[rows], labels[rows])
    for ridge in (1e-6, 1e-2):
        weight, bias = equations.solve(ridge)
        readout = Ridge(ridge=equations.penalty(ridge), fit_bias=True)
        readout.fit(features.numpy(), np.eye(5)[labels.numpy()])
        np.testing.assert_allclose(weight.numpy(), readout.Wout, rtol=1e-8, atol=1e-10)
        np.testing.assert_allclose(bias.numpy(), np.ravel(readout.bias), rtol=1e-8, atol=1e-10)


@pytest.mark.parametrize("name", TOPOLOGIES)
def test_reservoirpy_spectral_radius_agrees_for_every_topology(name):
    weight = recurrent_matrix(ReservoirOptions(topology=name, **OPTIONS), torch.Generator().manual_seed(4))
    ours = spectral_radius(eigenvalue_spectrum(weight))
    theirs = observables.spectral_radius(weight.numpy().T.copy())
    assert ours == pytest.approx(theirs, abs=1e-12)
    assert ours == pytest.approx(0.0 if name == "delay_line" else 0.9, abs=1e-12)


@pytest.mark.parametrize("name", TOPOLOGIES)
def test_reservoirpy_memory_capacity_agrees_to_sampling_error(name):
    """Both protocols on long series (16,000 + 4,000 steps for reservoirpy, 8 + 2 sequences of 2,000 for lit_vir)
    through the same W and input vector; seeds 0–2 differ by up to 1.3% within each and 2.7% between them
    (N = 30, k_max = 30, measured once at commit-time), so 5% separates a disagreement from noise."""
    nodes, delays = 30, 30
    options = ReservoirOptions(topology=name, **{**OPTIONS, "num_nodes": nodes})
    weight = recurrent_matrix(options, torch.Generator().manual_seed(0))
    vector = scalar_input_vector(nodes, density=0.5, signed=True, seed=0)
    ours = memory_capacity(weight, vector, max_delay=delays, washout=100, steps=2000, ridge=1e-8).total
    series = np.random.default_rng(0).uniform(-0.8, 0.8, size=(20000, 1))
    node = ReservoirpyReservoir(W=weight.numpy().T.copy(), Win=vector.numpy()[:, None].copy(), bias=np.zeros(nodes))
    theirs = observables.memory_capacity(node >> Ridge(ridge=1e-10), delays, series=series, test_size=0.2)
    assert ours == pytest.approx(theirs, rel=0.05)
    assert ours > 5  # far from 0: a memory to compare
