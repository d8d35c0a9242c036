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
from dataclasses import replace
from typing import Any, Literal

import torch
from torch import nn
from torch.utils.checkpoint import checkpoint

from lit_vir.checks import check_range
from lit_vir.models.reservoir_options import ReservoirOptions
from lit_vir.models.topology import input_matrix, recurrent_matrix, signed_cycle_with_jumps, signs_and_hole

__all__ = ["Activation", "Reservoir", "draw_matrices", "reservoir_step"]

Activation = Literal["tanh", "identity"]


def reservoir_step(
    state: torch.Tensor,
    drive: torch.Tensor,
    weight: torch.Tensor,
    leak_rate: float = 1.0,
    activation: Activation = "tanh",
) -> tuple[torch.Tensor, torch.Tensor]:
    """One step of the recurrence, the one implementation the model and `lit_vir.analysis` share:

        s_t = φ(h_{t−1}·W + u_t + b),    h_t = (1 − a)·h_{t−1} + a·s_t

    for states (B, N) with W (N, N), or a bank (L, B, N) with W (L, N, N); the drive is u_t + b in the
    states' shape. φ = tanh, or the identity for linear-reservoir checks. Returns (h_t, s_t).
    """
    product = torch.baddbmm(drive, state, weight) if state.dim() == 3 else torch.addmm(drive, state, weight)
    output = torch.tanh(product) if activation == "tanh" else product
    return (output if leak_rate == 1.0 else torch.lerp(state, output, leak_rate)), output


def draw_matrices(
    options: ReservoirOptions, in_features: int, seed: int
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]:
    """W (N, N), V (D, N) and b (N,) or None of one reservoir, float64, from a generator seeded with `seed`.

    Draw order: cycle_jumps' signs and hole (made for every topology), V, b, then the draws of any other
    topology's W. So V and b of a seed are the same whatever the topology — a topology comparison changes W
    alone — and the reference's W, V and b are those of the first implementation, bit for bit. A `memoryless`
    reservoir has W = 0 and the same V and b.
    """
    generator = torch.Generator().manual_seed(seed)
    signs, hole = signs_and_hole(options.num_nodes, generator)
    inputs = input_matrix(
        in_features, options.num_nodes, generator, density=options.input_density, signed=options.signed_input
    )
    bias = None
    if options.bias_scaling > 0:
        uniform = torch.rand(options.num_nodes, generator=generator, dtype=torch.float64)
        bias = options.bias_scaling * (2.0 * uniform - 1.0)
    if options.memoryless:
        weight = torch.zeros(options.num_nodes, options.num_nodes, dtype=torch.float64)
    elif options.topology == "cycle_jumps":
        weight = signed_cycle_with_jumps(options, signs, hole)
    else:
        weight = recurrent_matrix(options, generator)
    return weight, inputs, bias


class Reservoir(nn.Module):
    """A bank of `num_reservoirs` fixed reservoirs, of the "nearly fully connected" topology or another one
    (`ReservoirOptions.topology`).

    Reservoir i of the bank is drawn from a generator seeded with `seed + i` (W, then V, then b), so
    a seed fixes every matrix on every process, and core i of a deep ViR is the same reservoir in
    its parallel and serial forms. Hyperparameters: `options` (a `ReservoirOptions`) and/or its fields
    as keywords (`Reservoir(8, num_nodes=20, jump_size=3)`).
    """

    def __init__(
        self,
        in_features: int,
        options: ReservoirOptions | None = None,
        *,
        num_reservoirs: int = 1,
        seed: int = 42,
        **fields: Any,
    ) -> None:
        super().__init__()
        owner = type(self).__name__
        check_range(owner, "in_features", in_features, low=1)
        check_range(owner, "num_reservoirs (L)", num_reservoirs, low=1)
        options = ReservoirOptions(**fields) if options is None else replace(options, **fields)
        self.options = options
        self.in_features = in_features
        self.num_reservoirs = num_reservoirs
        self.seed = seed

        drawn = [draw_matrices(options, in_features, seed + index) for index in range(num_reservoirs)]
        recurrent, inputs, biases = zip(*drawn, strict=True)
        dtype = torch.get_default_dtype()
        self.register_buffer("weight", torch.stack(recurrent).to(dtype))  # (L, N, N)
        self.register_buffer("input_weight", torch.stack(inputs).to(dtype))  # (L, D, N)
        has_bias = options.bias_scaling > 0
        self.register_buffer("bias", torch.stack(biases).to(dtype) if has_bias else None)  # (L, N)

    @property
    def num_nodes(self) -> int:
        return self.options.num_nodes

    @property
    def leak_rate(self) -> float:
        return self.options.leak_rate

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
        return nullcontext() if self.options.autocast_recurrence else torch.autocast(device_type, enabled=False)

    def states(self, drive: torch.Tensor) -> torch.Tensor:
        """Drive → states: through `recur` when autograd must see the steps, else in the drive's own memory.
        Memoryless without leak (W = 0, a = 1): h_t = tanh(u_t + b) for every t at once, no loop."""
        if self.options.memoryless and self.leak_rate == 1.0:
            return drive.tanh() if self.needs_graph(drive) else drive.tanh_()
        return self.recur(drive) if self.needs_graph(drive) else self.overwrite_with_states(drive)

    def needs_graph(self, drive: torch.Tensor) -> bool:
        """Autograd must see the steps when the drive needs a gradient (serial cores, a trained embedding),
        or when the recurrence runs under autocast (the in-place kernels do not autocast). A compiler tracing the
        model (torch.export, torch.compile, the ONNX export) also gets the out-of-place steps: it would rewrite
        the in-place updates of the drive's views as scatters, slower to trace and to run than the plain steps."""
        if torch.compiler.is_compiling() or (torch.is_grad_enabled() and drive.requires_grad):
            return True
        return self.options.autocast_recurrence and torch.is_autocast_enabled(drive.device.type)

    def recur(self, drive: torch.Tensor) -> torch.Tensor:
        """The recurrence over t with an autograd graph: (L, B, T, N) → (L, B, T, N), optionally
        checkpointed (`checkpoint_recurrence`: states recomputed in backward instead of stored)."""
        if self.options.checkpoint_recurrence and torch.is_grad_enabled():
            return checkpoint(self.recur_with_graph, drive, use_reentrant=False)
        return self.recur_with_graph(drive)

    def recur_with_graph(self, drive: torch.Tensor) -> torch.Tensor:
        """Out-of-place steps that autograd can differentiate through."""
        state = drive.new_zeros(drive.shape[0], drive.shape[1], drive.shape[3])  # (L, B, N)
        states = []
        for step in range(drive.shape[2]):
            state, _ = reservoir_step(state, drive[:, :, step], self.weight, self.leak_rate)
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
