"""A sweep's studies and their trial slots: what the driver creates once and every worker reads back.

A grid-only sweep is one study whose trials are the grid's points (cells × seeds), each enqueued with its
coordinates as fixed categorical parameters (row, dataset, keys, seed). A sweep with a search space is one study
per grid cell (named `<sweep>.<cell>`), each with `n_trials` slots drawn by the sampler when a worker takes them.
"""

from __future__ import annotations

import itertools
import time
from dataclasses import dataclass
from typing import Any

import optuna
from optuna.exceptions import DuplicatedStudyError
from optuna.storages import RDBStorage
from optuna.trial import TrialState

from lit_vir.sweep.spaces import param_names, search_space
from lit_vir.sweep.spec import Cell, Param, SweepSpec, cells, short
from lit_vir.sweep.storage import grid_values, make_pruner, make_sampler, pop_waiting

__all__ = ["Plan", "Slot"]

SLOTS_READY_S = 60  # how long a second driver waits for the first to finish enqueuing a new study's slots


@dataclass(frozen=True)
class Slot:
    """One trial to enqueue: its fixed parameters and its user attributes (cell, slot index)."""

    params: dict[str, Any]
    attrs: dict[str, Any]


def primitive(value: Any) -> Any:
    """A grid value as an Optuna categorical choice (None, bool, int, float or str): lists and dicts as text."""
    return value if isinstance(value, (type(None), bool, int, float, str)) else str(value)


@dataclass
class Plan:
    """The sweep as every process sees it: cells by name, the search space by full key and by parameter name."""

    spec: SweepSpec
    cells: dict[str, Cell]

    @classmethod
    def of(cls, spec: SweepSpec) -> Plan:
        return cls(spec, {cell.name: cell for cell in cells(spec)})

    def __post_init__(self) -> None:
        self.space: dict[str, Param] = search_space(self.spec.search) if self.spec.search else {}
        self.names = param_names(self.space)

    @property
    def searching(self) -> bool:
        return self.spec.search is not None

    def study_name(self, cell: Cell) -> str:
        return f"{self.spec.name}.{cell.name}" if self.searching and cell.params else self.spec.name

    def grid_choices(self) -> dict[str, list[Any]]:
        """Each grid coordinate's values, the choices of its categorical parameter."""
        choices: dict[str, list[Any]] = {}
        for cell in self.cells.values():
            for name, value in cell.params:
                values = choices.setdefault(name, [])
                if primitive(value) not in values:
                    values.append(primitive(value))
        if self.spec.grid.seeds:
            choices["seed"] = list(self.spec.grid.seeds)
        return choices

    def search_slots(self, cell: Cell) -> list[Slot]:
        """A search's trials in a cell: `n_trials` for the sampler to draw, or with `sampler: grid` every point of
        the grid, enqueued with its values (in order; at most `n_trials` of them)."""
        search = self.spec.search
        if search.sampler != "grid":
            return [Slot({}, {"cell": cell.name, "slot": index}) for index in range(search.n_trials)]
        values = grid_values(self.sampler_space())
        points = [dict(zip(values, point, strict=True)) for point in itertools.product(*values.values())]
        return [
            Slot(point, {"cell": cell.name, "slot": index}) for index, point in enumerate(points[: search.n_trials])
        ]

    def slots(self) -> dict[str, list[Slot]]:
        """Study name → the trials it is made of."""
        if self.searching:
            return {self.study_name(cell): self.search_slots(cell) for cell in self.cells.values()}
        slots = []
        for seed in self.spec.grid.seeds or [None]:  # seed-major: a sweep stopped early has every row's first seeds
            for cell in self.cells.values():
                params = {name: primitive(value) for name, value in cell.params}
                if seed is not None:
                    params["seed"] = seed
                slots.append(Slot(params, {"cell": cell.name, "slot": len(slots)}))
        return {self.spec.name: slots}

    def sampler_space(self) -> dict[str, Param]:
        return {self.names[key]: param for key, param in self.space.items()}

    def load(self, storage: RDBStorage, name: str, trial: int = 0) -> optuna.Study:
        """The study, with its sampler seeded for drawing trial number `trial`."""
        return optuna.load_study(
            study_name=name,
            storage=storage,
            sampler=make_sampler(self.spec.search, self.sampler_space(), trial),
            pruner=make_pruner(self.spec.pruner),
        )

    def take(self, storage: RDBStorage) -> tuple[optuna.Trial, int] | None:
        """A WAITING trial of any study (in spec order), made RUNNING for this worker, and its storage id."""
        for study in self.studies(storage):
            taken = pop_waiting(study, storage)
            if taken is not None:
                number, trial_id = taken
                seeded = self.load(storage, study.study_name, number)
                seeded.get_trials(deepcopy=False)  # its (cached) view of the storage learns of the trial it took
                return optuna.Trial(seeded, trial_id), trial_id
        return None

    def prepare(self, storage: RDBStorage) -> list[optuna.Study]:
        """Create the studies that do not exist yet and enqueue their slots; a study another driver is creating is
        waited for; slots missing from an existing study (n_trials raised, or a creator stopped midway) are added."""
        studies = []
        for name, slots in self.slots().items():
            try:
                study = optuna.create_study(
                    study_name=name,
                    storage=storage,
                    direction=self.spec.direction,
                    sampler=make_sampler(self.spec.search, self.sampler_space()),
                    pruner=make_pruner(self.spec.pruner),
                )
                study.set_user_attr("sweep", self.spec.name)
                created = True
            except DuplicatedStudyError:
                study = self.load(storage, name)
                created = False
            if not created:
                wait_for_slots(study)
            have = {trial.user_attrs.get("slot") for trial in study.get_trials(deepcopy=False)}
            for index, slot in enumerate(slots):
                if index not in have:
                    study.enqueue_trial(slot.params, user_attrs=slot.attrs)
            if study.user_attrs.get("slots") != len(slots):
                study.set_user_attr("slots", len(slots))
            studies.append(study)
        return studies

    def studies(self, storage: RDBStorage) -> list[optuna.Study]:
        """The sweep's studies as they are (for workers, status and report): those not created yet are left out."""
        existing = {summary.study_name for summary in optuna.get_all_study_summaries(storage, include_best_trial=False)}
        return [self.load(storage, name) for name in self.slots() if name in existing]

    def param_argv_keys(self) -> dict[str, str]:
        """Parameter name → the dotted key it sets (the search space's; grid coordinates set their cell's argv)."""
        return {name: key for key, name in self.names.items()}

    def describe(self, params: dict[str, Any]) -> str:
        return ", ".join(
            f"{name}={short(value) if isinstance(value, float) else value}" for name, value in params.items()
        )


def wait_for_slots(study: optuna.Study) -> None:
    """Wait while the driver that created the study enqueues its slots (it marks the end with the `slots`
    attribute); a creator that stopped midway leaves the count still, and this driver then adds what is missing."""
    deadline, count = time.monotonic() + SLOTS_READY_S, -1
    while "slots" not in study.user_attrs and time.monotonic() < deadline:
        now = len(study.get_trials(deepcopy=False, states=(TrialState.WAITING,)))
        if now != count:
            deadline, count = time.monotonic() + SLOTS_READY_S, now
        time.sleep(0.5)
