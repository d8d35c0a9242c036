"""Learning tests that tell ViR from its ablations: only a model whose states carry the past can solve a task
whose label sits in the first token, and a fit trains the readouts, not only the head."""

import lightning as L
import pytest
import torch

from lit_vir.data import DigitsDataModule
from lit_vir.models import ViR
from lit_vir.training import ImageClassifier

CLASSES = 4


def early_token_task(count: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """8×8 grey images cut into 4 patches of 4×4: the top-left patch (token 1 of 4) is a noisy template of the
    class; the other three are pure noise. With `pooling: last` the head reads only token 4's output, so the
    label can reach it only through the reservoir's memory of token 1."""
    generator = torch.Generator().manual_seed(seed)
    templates = torch.randn(CLASSES, 4, 4, generator=torch.Generator().manual_seed(99))
    labels = torch.randint(0, CLASSES, (count,), generator=generator)
    images = torch.randn(count, 1, 8, 8, generator=generator)
    images[:, 0, :4, :4] = templates[labels] + 0.3 * torch.randn(count, 4, 4, generator=generator)
    return images, labels


def trained_accuracy(**options) -> float:
    torch.manual_seed(0)
    model = ViR(
        CLASSES, 8, 1, patch_size=4, embed_dim=16, num_nodes=64, jump_size=7, mlp_dim=32, pooling="last", **options
    )
    images, labels = early_token_task(2048, seed=0)
    optimizer = torch.optim.Adam([p for p in model.parameters() if p.requires_grad], lr=3e-3)
    model.train()
    for _ in range(6):
        for batch in torch.randperm(len(labels), generator=torch.Generator().manual_seed(1)).split(64):
            loss = torch.nn.functional.cross_entropy(model(images[batch]), labels[batch])
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
    test_images, test_labels = early_token_task(1024, seed=1)
    with torch.no_grad():
        return (model.eval()(test_images).argmax(dim=-1) == test_labels).double().mean().item()


def test_vir_learns_a_label_carried_only_by_the_first_token():
    assert trained_accuracy() > 0.9  # chance is 0.25


@pytest.mark.parametrize("ablation", [dict(use_reservoir=False), dict(memoryless=True)])
def test_without_the_recurrence_the_first_token_is_out_of_reach(ablation):
    assert trained_accuracy(**ablation) < 0.35


def test_a_fit_trains_the_readouts_and_mlp_and_head_but_not_the_fixed_parts():
    torch.manual_seed(0)
    backbone = ViR(10, 8, 1, patch_size=2, embed_dim=8, num_nodes=30, jump_size=4, mlp_dim=16)
    before = {name: tensor.clone() for name, tensor in backbone.state_dict().items()}
    trainer = L.Trainer(
        max_epochs=1,
        limit_train_batches=3,
        limit_val_batches=0,
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        accelerator="cpu",
    )
    trainer.fit(ImageClassifier(backbone), datamodule=DigitsDataModule(batch_size=32))
    after = backbone.state_dict()
    changed = {name for name in before if not torch.equal(before[name], after[name])}
    learnable = {name for name, _ in backbone.named_parameters() if not name.startswith("embedding.")}
    assert changed == learnable  # every readout, MLP, norm and head tensor moved; nothing fixed did
    assert {"readouts.0.state_readout.weight", "readouts.0.quadratic_readout.weight"} <= changed
