"""The fixed echo-state reservoir that replaces ViT's Transformer (spec: `vir.md`, "The reservoir").

Row-vector convention, per image, t = 1..T, h_0 = 0:

    u_t = x_t · V
    h_t = (1 − a)·h_{t−1} + a·tanh(h_{t−1}·W + u_t + b)

One module holds a *bank* of L independent reservoirs (W: L×N×N, V: L×D×N) so that the L cores of a
parallel deep ViR advance together, one batched product per step. W, V and b are buffers: saved in
checkpoints, moved with the model, never trained.
"""

from __future__ import annotations

import torch
from torch import nn
from torch.utils.checkpoint import checkpoint

from lit_vir.checks import check_range
from lit_vir.models.topology import input_matrix, nearly_fully_connected

__all__ = ["Reservoir"]


class Reservoir(nn.Module):
    """A bank of `num_reservoirs` fixed reservoirs with the "nearly fully connected" topology.

    Reservoir i of the bank is drawn from a generator seeded with `seed + i` (W, then V, then b), so
    a seed fixes every matrix on every process, and core i of a deep ViR is the same reservoir in
    its parallel and serial forms.
    """

    def __init__(
        self,
        in_features: int,
        num_nodes: int = 1000,
        *,
        num_reservoirs: int = 1,
        spectral_radius: float = 0.9,
        cycle_weight: float = 0.05,
        jump_weight: float = 0.5,
        background_weight: float = 0.08,
        jump_size: int = 137,
        input_sparsity: float = 0.05,
        input_scaling: float = 1.0,
        signed_input: bool = False,
        leak_rate: float = 1.0,
        bias_scaling: float = 0.0,
        autocast_recurrence: bool = False,
        checkpoint_recurrence: bool = False,
        seed: int = 42,
    ) -> None:
        super().__init__()
        owner = type(self).__name__
        check_range(owner, "in_features", in_features, low=1)
        check_range(owner, "num_nodes (N)", num_nodes, low=2)
        check_range(owner, "num_reservoirs (L)", num_reservoirs, low=1)
        check_range(
            owner,
            "spectral_radius (α)",
            spectral_radius,
            low=0,
            low_inclusive=False,
            hint="Typical values lie in 0.5–1.5; the reference uses 0.9.",
        )
        check_range(
            owner,
            "jump_size (ℓ)",
            jump_size,
            low=1,
            high=num_nodes,
            high_inclusive=False,
            hint=f"It must be smaller than num_nodes (N = {num_nodes}); the reference uses 137.",
        )
        check_range(owner, "input_sparsity (SD)", input_sparsity, low=0, high=1, low_inclusive=False)
        check_range(owner, "input_scaling", input_scaling, low=0, low_inclusive=False)
        check_range(
            owner,
            "input_sparsity × input_scaling (density of V)",
            input_sparsity * input_scaling,
            low=0,
            high=1,
            low_inclusive=False,
            hint="The reference draws V with this density, so the product must be a fraction.",
        )
        check_range(owner, "leak_rate (a)", leak_rate, low=0, high=1, low_inclusive=False)
        check_range(owner, "bias_scaling", bias_scaling, low=0)

        self.in_features = in_features
        self.num_nodes = num_nodes
        self.num_reservoirs = num_reservoirs
        self.leak_rate = leak_rate
        self.autocast_recurrence = autocast_recurrence
        self.checkpoint_recurrence = checkpoint_recurrence
        self.seed = seed
        # How W and V were drawn, so analyses and perturbation studies can redraw them.
        self.topology = dict(
            cycle_weight=cycle_weight,
            jump_weight=jump_weight,
            background_weight=background_weight,
            jump_size=jump_size,
            spectral_radius=spectral_radius,
        )
        self.input_options = dict(input_sparsity=input_sparsity, input_scaling=input_scaling, signed=signed_input)

        recurrent, inputs, biases = [], [], []
        for index in range(num_reservoirs):
            generator = torch.Generator().manual_seed(seed + index)
            recurrent.append(nearly_fully_connected(num_nodes, generator, **self.topology))
            inputs.append(input_matrix(in_features, num_nodes, generator, **self.input_options))
            if bias_scaling > 0:
                uniform = torch.rand(num_nodes, generator=generator, dtype=torch.float64)
                biases.append(bias_scaling * (2.0 * uniform - 1.0))
        dtype = torch.get_default_dtype()
        self.register_buffer("weight", torch.stack(recurrent).to(dtype))  # (L, N, N)
        self.register_buffer("input_weight", torch.stack(inputs).to(dtype))  # (L, D, N)
        self.register_buffer("bias", torch.stack(biases).to(dtype) if biases else None)  # (L, N)

    def extra_repr(self) -> str:
        return (
            f"in_features={self.in_features}, num_nodes={self.num_nodes}, "
            f"num_reservoirs={self.num_reservoirs}, leak_rate={self.leak_rate}, seed={self.seed}"
        )

    def drive(self, tokens: torch.Tensor) -> torch.Tensor:
        """u = x·V (+ b) for all tokens at once: (B, T, D) shared, or (L, B, T, D) → (L, B, T, N)."""
        tokens = tokens.to(self.input_weight.dtype)
        if tokens.dim() == 3:
            drive = torch.einsum("btd,ldn->lbtn", tokens, self.input_weight)
        else:
            drive = torch.einsum("lbtd,ldn->lbtn", tokens, self.input_weight)
        if self.bias is not None:
            drive = drive + self.bias[:, None, None, :]
        return drive

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        """States h_1..h_T of every reservoir: (B, T, D) or (L, B, T, D) → (L, B, T, N).

        Runs in the buffers' dtype (float32) even under autocast unless `autocast_recurrence`:
        a long product of a matrix with spectral radius near 1 drifts in bf16.
        """
        if self.autocast_recurrence:
            return self.recur(self.drive(tokens))
        with torch.autocast(tokens.device.type, enabled=False):
            return self.recur(self.drive(tokens))

    def recur(self, drive: torch.Tensor) -> torch.Tensor:
        """The recurrence over t for a precomputed drive u_t + b: (L, B, T, N) → (L, B, T, N).

        Only when the drive needs a gradient (serial cores, a trained embedding) is an autograd graph
        built through time, optionally checkpointed (`checkpoint_recurrence`: states recomputed in
        backward instead of stored). Otherwise the states are written in place, no graph, no copies.
        """
        if torch.is_grad_enabled() and drive.requires_grad:
            if self.checkpoint_recurrence:
                return checkpoint(self.recur_with_graph, drive, use_reentrant=False)
            return self.recur_with_graph(drive)
        if self.autocast_recurrence and torch.is_autocast_enabled(drive.device.type):
            return self.recur_with_graph(drive)  # out= kernels do not autocast
        with torch.no_grad():
            return self.recur_in_place(drive)

    def recur_with_graph(self, drive: torch.Tensor) -> torch.Tensor:
        """Out-of-place steps that autograd can differentiate through."""
        state = drive.new_zeros(drive.shape[0], drive.shape[1], drive.shape[3])  # (L, B, N)
        states = []
        for step in range(drive.shape[2]):
            activation = torch.tanh(torch.baddbmm(drive[:, :, step], state, self.weight))
            state = activation if self.leak_rate == 1.0 else torch.lerp(state, activation, self.leak_rate)
            states.append(state)
        return torch.stack(states, dim=2)

    def recur_in_place(self, drive: torch.Tensor) -> torch.Tensor:
        """One fused multiply-add and one tanh per step, each written into the output (time-major)."""
        by_time = drive.permute(2, 0, 1, 3)  # (T, L, B, N) view
        states = torch.empty(by_time.shape, dtype=drive.dtype, device=drive.device)  # (T, L, B, N)
        for step in range(len(by_time)):
            current = states[step]
            if step == 0:
                current.copy_(by_time[0])  # h_0 = 0: the first pre-activation is the drive itself
            else:
                torch.baddbmm(by_time[step], states[step - 1], self.weight, out=current)
            current.tanh_()
            if self.leak_rate != 1.0:
                previous = states[step - 1] if step else torch.zeros_like(current)
                torch.lerp(previous, current, self.leak_rate, out=current)
        return states.permute(1, 2, 0, 3)  # (L, B, T, N) view
