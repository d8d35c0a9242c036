"""The fixed echo-state reservoir that replaces ViT's Transformer (spec: `vir.md`, "The reservoir").

Row-vector convention, per image, t = 1..T, h_0 = 0:

    u_t = x_t · V
    h_t = (1 − a)·h_{t−1} + a·tanh(h_{t−1}·W + u_t + b)

One module holds a *bank* of L independent reservoirs (W: L×N×N, V: L×D×N) so that the L cores of a
parallel deep ViR advance together, one batched product per step. W, V and b are buffers: saved in
checkpoints, moved with the model, never trained.
"""

from __future__ import annotations

from contextlib import AbstractContextManager, nullcontext

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
        """u = x·V (+ b) for all tokens at once: (B, T, D) shared, or (L, B, T, D) → (L, B, T, N), contiguous.

        One batched product over the L reservoirs with the B·T tokens as rows: broadcasting V over the
        batch instead (`matmul` of (1, B, T, D) by (L, 1, D, N)) would copy V B times.
        """
        tokens = tokens.to(self.input_weight.dtype)
        *_, batch, steps, width = tokens.shape
        rows = tokens.reshape(-1, batch * steps, width).expand(self.num_reservoirs, -1, -1)  # (L, B·T, D)
        drive = torch.bmm(rows, self.input_weight).view(self.num_reservoirs, batch, steps, self.num_nodes)
        if self.bias is not None:
            drive.add_(self.bias[:, None, None, :])  # bmm's backward needs its inputs, not its output
        return drive

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        """States h_1..h_T of every reservoir: (B, T, D) or (L, B, T, D) → (L, B, T, N).

        Runs in the buffers' dtype (float32) even under autocast unless `autocast_recurrence`:
        a long product of a matrix with spectral radius near 1 drifts in bf16. Without a graph to build,
        the states overwrite the drive in its own memory (one (L, B, T, N) tensor, not two).
        """
        with self.precision(tokens.device.type):
            return self.states(self.drive(tokens))

    def precision(self, device_type: str) -> AbstractContextManager:
        """The autocast setting the reservoir runs under: off (its buffers' float32) unless `autocast_recurrence`."""
        return nullcontext() if self.autocast_recurrence else torch.autocast(device_type, enabled=False)

    def states(self, drive: torch.Tensor) -> torch.Tensor:
        """Drive → states: through `recur` when autograd must see the steps, else in the drive's own memory."""
        return self.recur(drive) if self.needs_graph(drive) else self.overwrite_with_states(drive)

    def needs_graph(self, drive: torch.Tensor) -> bool:
        """Autograd must see the steps when the drive needs a gradient (serial cores, a trained embedding),
        or when the recurrence runs under autocast (the in-place kernels do not autocast)."""
        if torch.is_grad_enabled() and drive.requires_grad:
            return True
        return self.autocast_recurrence and torch.is_autocast_enabled(drive.device.type)

    def recur(self, drive: torch.Tensor) -> torch.Tensor:
        """The recurrence over t with an autograd graph: (L, B, T, N) → (L, B, T, N), optionally
        checkpointed (`checkpoint_recurrence`: states recomputed in backward instead of stored)."""
        if self.checkpoint_recurrence and torch.is_grad_enabled():
            return checkpoint(self.recur_with_graph, drive, use_reentrant=False)
        return self.recur_with_graph(drive)

    def recur_with_graph(self, drive: torch.Tensor) -> torch.Tensor:
        """Out-of-place steps that autograd can differentiate through."""
        state = drive.new_zeros(drive.shape[0], drive.shape[1], drive.shape[3])  # (L, B, N)
        states = []
        for step in range(drive.shape[2]):
            activation = torch.tanh(torch.baddbmm(drive[:, :, step], state, self.weight))
            state = activation if self.leak_rate == 1.0 else torch.lerp(state, activation, self.leak_rate)
            states.append(state)
        return torch.stack(states, dim=2)

    @torch.no_grad()
    def overwrite_with_states(self, drive: torch.Tensor) -> torch.Tensor:
        """Turn a contiguous drive (L, B, T, N) into the states, step by step in its own memory: one fused
        multiply-add (u_t + h_{t−1}·W) and one tanh per step, no graph. Each core's states end up as one
        contiguous (B, T, N) block that the readouts use without copies."""
        for step in range(drive.shape[2]):
            current = drive[:, :, step]  # (L, B, N) view: u_t, becoming h_t
            previous = drive[:, :, step - 1] if step else None  # already h_{t−1}
            if previous is not None:
                current.baddbmm_(previous, self.weight)
            current.tanh_()
            if self.leak_rate != 1.0:
                current.mul_(self.leak_rate)
                if previous is not None:
                    current.add_(previous, alpha=1.0 - self.leak_rate)
        return drive
