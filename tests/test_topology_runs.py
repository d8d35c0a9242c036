"""Every topology through the real tools: its config piece composes with the budget recipe, `lit-vir dynamics`
measures it and the dynamics callback logs it — each checked against the W of the model built here (numpy), and
the two Lyapunov methods against each other. Plus the labels that keep topology runs apart in `lit-vir compare`."""

from __future__ import annotations

import json
import logging
import math

import lightning as L
import networkx
import numpy as np
import pytest
import yaml
from lightning.pytorch.loggers import TensorBoardLogger
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from lit_vir.analysis.small_world import SmallWorld, reservoir_small_world
from lit_vir.cli import main
from lit_vir.commands.dynamics import main as dynamics
from lit_vir.config import build_from_config
from lit_vir.models.reservoir_options import TOPOLOGIES
from lit_vir.models.topology import ring
from lit_vir.sweep.spec import cells, read_spec
from lit_vir.sweep.validate import base_argv, run_parser, validate
from lit_vir.training.callbacks.dynamics import ReservoirDynamics
from lit_vir.training.labels import model_label, recipe_label, run_hyperparameters
from tests.conftest import CONFIGS, TINY_VIR

# Per-topology options at N = 32: random_sparse needs enough links for a cycle, small_world a degree below N.
SMALL = [*TINY_VIR, "--model.backbone.init_args.density", "0.2", "--model.backbone.init_args.degree", "4"]
BUDGETS = ["--max_delay", "20", "--path_sources", "10", "--iid_steps", "200"]


def piece(name: str) -> list[str]:
    return ["-c", str(CONFIGS / "topology" / f"{name}.yaml")]


def model_weight(config: list[str]) -> np.ndarray:
    """W of the model a config builds, as the tools see it (float32 buffer, read in float64)."""
    classifier, _ = build_from_config(config)
    return classifier.backbone.reservoirs[0].weight[0].double().numpy()


def linked_pairs(weight: np.ndarray) -> int:
    """Node pairs i < j joined by a link in either direction: the edges of the undirected graph of W."""
    linked = (weight != 0) | (weight.T != 0)
    return int(np.triu(linked, k=1).sum())


@pytest.mark.parametrize("name", TOPOLOGIES)
def test_dynamics_command_measures_each_topology(name, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    config = ["-c", str(CONFIGS / "vir.yaml"), *piece(name), *SMALL]
    dynamics([*config, "--iid", *BUDGETS, "--output", "dynamics.json"])
    report = json.loads((tmp_path / "dynamics.json").read_text())
    (record,) = report["reservoirs"]
    weight = model_weight(config)
    assert report["topology"] == name
    assert record["spectral_radius"] == pytest.approx(np.abs(np.linalg.eigvals(weight)).max(), abs=1e-9)
    assert record["weighted_edges"] == linked_pairs(weight)
    if name == "delay_line":  # nilpotent: every J_t = diag(1 − s_t²)·Wᵀ is too, so ρ(J_t) = 0 and λ = −∞
        assert record["spectral_radius"] == 0 and record["lyapunov_jacobian"] == -math.inf
    else:  # at α 0.9 under the i.i.d. drive both methods see the same ordered dynamics
        assert record["lyapunov_jacobian"] < 0 and record["lyapunov_perturbation"] < 0
        assert record["lyapunov_jacobian"] == pytest.approx(record["lyapunov_perturbation"], abs=0.01)
    assert len(record["memory_capacity_per_delay"]) == 20


@pytest.mark.parametrize("name", TOPOLOGIES)
def test_each_topology_piece_composes_with_the_fashion_mnist_budget_run(name, tmp_path, monkeypatch, capsys, caplog):
    monkeypatch.chdir(tmp_path)
    pieces = ["-c", str(CONFIGS / "vir.yaml"), "-c", str(CONFIGS / "data" / "fashion_mnist.yaml")]
    budget = ["-c", str(CONFIGS / "recipe" / "budget.yaml")]
    with pytest.raises(SystemExit) as exit_info:
        main(["fit", *pieces, *budget, *piece(name), "--print_config"])
    assert exit_info.value.code in (0, None)
    printed = yaml.safe_load(capsys.readouterr().out)
    backbone = printed["model"]["init_args"]["backbone"]["init_args"]
    assert backbone["topology"] == name and backbone["num_nodes"] == 1000 and backbone["spectral_radius"] == 0.9
    assert printed["data"]["class_path"] == "lit_vir.data.FashionMNISTDataModule"
    assert printed["trainer"]["max_time"] == "00:00:15:00" and printed["trainer"]["max_epochs"] == -1
    digits = ["-c", str(CONFIGS / "vir.yaml"), "-c", str(CONFIGS / "data" / "digits.yaml"), *budget, *piece(name)]
    with caplog.at_level(logging.INFO, logger="lightning.pytorch"):
        main(["fit", *digits, *SMALL, "--trainer.fast_dev_run", "true", "--trainer.enable_progress_bar", "false"])
    assert "`Trainer.fit` stopped: `max_steps=1` reached." in caplog.text


def test_dynamics_callback_logs_every_topology(tmp_path):
    for name in TOPOLOGIES:
        config = ["-c", str(CONFIGS / "vir.yaml"), *piece(name), *SMALL]
        classifier, _ = build_from_config(config)
        trainer = L.Trainer(logger=TensorBoardLogger(tmp_path, name=name), accelerator="cpu", enable_progress_bar=False)
        callback = ReservoirDynamics(max_delay=10, path_sources=5, figures=False)
        callback.on_fit_start(trainer, classifier)  # no datamodule: driven by the i.i.d. protocol
        trainer.logger.experiment.flush()
        events = EventAccumulator(str(tmp_path / name / "version_0"))
        events.Reload()
        logged = {tag: events.Scalars(tag)[-1].value for tag in events.Tags()["scalars"]}
        weight = classifier.backbone.reservoirs[0].weight[0].double().numpy()
        expected = np.abs(np.linalg.eigvals(weight)).max()
        assert logged["dynamics/core0/spectral_radius"] == pytest.approx(expected, abs=1e-6), name
        assert {"dynamics/core0/memory_capacity", "dynamics/core0/lyapunov_perturbation"} <= logged.keys(), name


def test_a_ring_has_no_triangles_so_omega_is_undefined():
    """A ring's clustering is 0, and so is its lattice reference's (the ring itself): ω = L_r/L − C/C_l is NaN,
    not a division error; σ = (C/C_r)/(L/L_r) is 0 where its random reference has triangles."""
    graphs = reservoir_small_world(0.9 * ring(40), strongest=2, path_sources=40)
    weighted = graphs["weighted"]
    assert weighted.clustering == networkx.average_clustering(networkx.cycle_graph(40)) == 0
    assert weighted.lattice_clustering == 0 and math.isnan(weighted.omega)
    hops = networkx.average_shortest_path_length(networkx.cycle_graph(40))
    assert weighted.path_length == pytest.approx(hops / 0.45)  # one-way links: strength (|W_ij| + |W_ji|)/2 = α/2
    assert math.isnan(SmallWorld.of((0.0, 2.0), (0.0, 1.0), (0.3, 5.0), edges=3).sigma)
    assert SmallWorld.of((0.2, 2.0), (0.1, 1.0), (0.4, 5.0), edges=3).omega == pytest.approx(1.0 / 2.0 - 0.2 / 0.4)


@pytest.mark.parametrize(
    ("module", "options", "model", "recipe"),
    [
        ("ImageClassifier", {"depth": 1}, "ViR-1", "reference"),
        ("ImageClassifier", {"depth": 1, "topology": "cycle_jumps"}, "ViR-1", "reference"),
        ("ImageClassifier", {"depth": 1, "topology": "small_world"}, "ViR-1 small_world", "reference"),
        ("ImageClassifier", {"depth": 3, "memoryless": True, "topology": "ring"}, "ViR-3 memoryless ring", "reference"),
        ("RidgeClassifier", {"depth": 1}, "ViR-1 ridge", "closed-form"),
        ("RidgeClassifier", {"depth": 1, "topology": "orthogonal"}, "ViR-1 orthogonal ridge", "closed-form"),
    ],
)
def test_topology_and_ridge_runs_have_their_own_labels(module, options, model, recipe):
    backbone = {"class_path": "lit_vir.models.ViR", "init_args": options}
    config = {"model": {"class_path": f"lit_vir.training.{module}", "init_args": {"backbone": backbone}}}
    config["data"] = {"class_path": "lit_vir.data.DigitsDataModule"}
    assert (model_label(config), recipe_label(config)) == (model, recipe)
    assert run_hyperparameters(config).get("topology") == options.get("topology")


def test_the_topology_field_is_in_every_resolved_run_config(capsys):
    """`compare` labels a run from its saved config, which holds every resolved option, defaults included."""
    with pytest.raises(SystemExit):
        main(["fit", "-c", str(CONFIGS / "vir.yaml"), "--print_config"])
    printed = yaml.safe_load(capsys.readouterr().out)
    assert printed["model"]["init_args"]["backbone"]["init_args"]["topology"] == "cycle_jumps"


def test_the_topology_sweep_runs_each_piece_with_the_results_protocol(monkeypatch):
    """configs/sweep/fmnist_topology.yaml, the lead's accuracy runs, composed after fmnist_15min.yaml: one row per
    topology piece but the reference (the table's vir1 row is that run), 3 seeds, the 15-minute budget, ViR-1's
    learning rate; every cell parses and builds (here with a 32-node model, as the engine checks it first)."""
    monkeypatch.chdir(CONFIGS.parent)  # the spec names its pieces from the repository root
    spec = read_spec(CONFIGS / "sweep" / "fmnist_15min.yaml", CONFIGS / "sweep" / "fmnist_topology.yaml")
    assert spec.base == ["configs/vir.yaml", "configs/data/fashion_mnist.yaml", "configs/recipe/budget.yaml"]
    assert spec.grid.seeds == [1, 2, 3] and spec.overrides["trainer.max_time"] == "00:00:15:00"
    assert spec.overrides["test_after_fit"] is True and spec.launcher.cores == [1]
    others = [name for name in TOPOLOGIES if name != "cycle_jumps"]
    found = cells(spec)
    assert [cell.name for cell in found] == others
    for cell, name in zip(found, others, strict=True):
        assert cell.argv[:2] == ("-c", f"configs/topology/{name}.yaml")
    tiny = {key[2:]: value for key, value in zip(SMALL[::2], SMALL[1::2], strict=True)}
    spec.overrides.update(tiny)
    assert [cell.name for cell in validate(spec)] == others


def test_the_topology_sweeps_reference_is_the_results_tables_vir1_run(monkeypatch):
    """The topology table reuses fmnist_table's vir1 runs as its cycle_jumps row: that holds only if the vir1 cell and
    a topology cell with the cycle_jumps piece resolve to the same configuration (learning rate included)."""
    monkeypatch.chdir(CONFIGS.parent)
    sweeps = CONFIGS / "sweep"
    table = read_spec(sweeps / "fmnist_15min.yaml", sweeps / "fmnist_table.yaml")
    topology = read_spec(sweeps / "fmnist_15min.yaml", sweeps / "fmnist_topology.yaml")
    vir1 = next(cell for cell in cells(table) if cell.name == "vir1")
    ring_cell = next(cell for cell in cells(topology) if cell.name == "ring")
    as_cycle_jumps = ("-c", "configs/topology/cycle_jumps.yaml", *ring_cell.argv[2:])
    parser = run_parser()
    argv = base_argv(table)
    assert base_argv(topology) == argv
    reference = parser.parse_args(argv + list(vir1.argv))
    same = parser.parse_args(argv + list(as_cycle_jumps))
    for config in (reference, same):
        config.pop("config", None)  # the -c files read, which differ by the cycle_jumps piece itself
    assert same == reference
    assert reference.model.init_args.optimizer.init_args.lr == 3.0e-4


@pytest.mark.parametrize("name", ["fmnist_ridge_equal_time", "fmnist_ridge_equal_time_130s"])
def test_the_ridge_equal_time_sweeps_build_every_cell(name, monkeypatch):
    """The ridge readout and the gradient rows it is compared with: every cell parses and builds (a 32-node model
    here), the ridge without a time limit, the gradient rows with theirs, both at ViR-1's tuned rate."""
    monkeypatch.chdir(CONFIGS.parent)
    spec = read_spec(CONFIGS / "sweep" / f"{name}.yaml")
    assert spec.grid.seeds == [1, 2, 3] and spec.launcher.cores == [1]
    tiny = {key[2:]: value for key, value in zip(SMALL[::2], SMALL[1::2], strict=True)}
    spec.overrides.update(tiny)
    found = {cell.name: cell for cell in validate(spec)}
    budgets = {"ridge": None, "vir1_4min": "00:00:04:00", "vir1_130s": "00:00:02:10"}
    parser = run_parser()
    for cell_name, cell in found.items():
        config = parser.parse_args(base_argv(spec) + list(cell.argv))
        assert config.trainer.max_time == budgets[cell_name], cell_name
        if cell_name != "ridge":
            assert config.model.init_args.optimizer.init_args.lr == 3.0e-4
        else:
            assert config.model.class_path == "lit_vir.training.RidgeClassifier"
