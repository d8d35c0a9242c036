"""One recurrence: the model's two engine paths and `lit_vir.analysis` give the same states."""

import pytest
import torch

from lit_vir.analysis.drives import token_drive
from lit_vir.analysis.states import run_reservoir
from lit_vir.models import Reservoir


@pytest.mark.parametrize("options", [dict(), dict(leak_rate=0.4, bias_scaling=0.2), dict(spectral_radius=1.4)])
def test_analysis_states_equal_reservoir_forward_states(options):
    reservoir = Reservoir(5, num_nodes=20, jump_size=3, num_reservoirs=2, **options).double()
    tokens = torch.randn(3, 7, 5, dtype=torch.float64)
    in_place = reservoir(tokens)  # no graph: the states overwrite the drive
    with_graph = reservoir.recur(reservoir.drive(tokens))
    for member in range(2):
        bias = None if reservoir.bias is None else reservoir.bias[member]
        drive = token_drive(tokens, reservoir.input_weight[member], bias)
        analysed = run_reservoir(reservoir.weight[member], drive, reservoir.leak_rate).states  # (B, T, N)
        assert torch.allclose(in_place[member], analysed, atol=1e-12)
        assert torch.allclose(with_graph[member], analysed, atol=1e-12)
