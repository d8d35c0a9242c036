"""Where a sweep's trials live: an Optuna RDB storage — SQLite in the sweep's folder by default, PostgreSQL for
several machines — with heartbeats, so a trial whose worker died is found and run again.

Why not Optuna's journal file: it has no heartbeat, so a worker killed mid-trial (SIGKILL, the OOM killer, a lost
node) would leave its trial RUNNING forever and the sweep could only be finished by hand. RDB storages record
heartbeats, `optuna.storages.fail_stale_trials` fails silent trials exactly once across processes, and the same
code then serves SQLite and PostgreSQL.

Every trial slot is enqueued when its study is created, and workers take WAITING trials with one atomic state
change (WAITING → RUNNING), so two workers, or two drivers on one storage, never run the same trial, and a study
never grows past its `n_trials`.
"""

from __future__ import annotations

import fcntl
import time
import warnings
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import optuna
from optuna.exceptions import StorageInternalError, UpdateFinishedTrialError
from optuna.storages import RDBStorage
from optuna.trial import FrozenTrial, TrialState
from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError as UrlError
from sqlalchemy.exc import IntegrityError, OperationalError, SQLAlchemyError

from lit_vir.checks import ConfigError
from lit_vir.sweep.spec import Param, Pruner, Search, SweepSpec

__all__ = [
    "StorageUnreachable",
    "grid_values",
    "make_pruner",
    "make_sampler",
    "open_storage",
    "pop_waiting",
    "quiet_optuna",
    "redacted",
    "storage_url",
]


def quiet_optuna() -> None:
    """Optuna's own progress lines ("A new study created") and its notes that heartbeats are experimental add
    nothing to lit-vir's status and progress output."""
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    warnings.filterwarnings("ignore", category=optuna.exceptions.ExperimentalWarning)


class StorageUnreachable(RuntimeError):
    """The storage cannot be opened (a server down, a wrong URL): said without the password."""


def storage_url(spec: SweepSpec) -> str:
    """The URL from `storage_file`, else `storage` (which must not hold a password: it would be saved with the
    sweep's spec and shown in logs), else SQLite in the sweep's folder."""
    if spec.storage_file:
        path = Path(spec.storage_file).expanduser()
        if not path.is_file():
            raise ConfigError(f"storage_file = {spec.storage_file}: no such file; write the storage URL into it.")
        url = path.read_text().strip()
    elif spec.storage:
        url = spec.storage
        if parsed_url(url).password:
            raise ConfigError(
                f"storage = {redacted(url)} holds a password, which would be saved with the sweep and shown in logs: "
                "remove it and let libpq read PGPASSWORD or ~/.pgpass, or put the whole URL in a file (storage_file)."
            )
    else:
        return f"sqlite:///{(spec.folder / 'optuna.db').resolve()}"
    parsed_url(url)
    return url


def parsed_url(url: str) -> Any:
    try:
        return make_url(url)
    except UrlError:
        raise ConfigError(
            "storage: not a database URL (e.g. postgresql+psycopg2://user@host:5432/db, sqlite:///path.db)."
        ) from None


def redacted(url: str) -> str:
    """The URL as it may be printed: its password, if any, replaced by ***."""
    try:
        return make_url(url).render_as_string(hide_password=True)
    except UrlError:
        return "<storage URL>"


def open_storage(spec: SweepSpec, on_stale: Callable[[optuna.Study, FrozenTrial], None] | None = None) -> RDBStorage:
    """The sweep's storage, with heartbeats every `launcher.heartbeat_s`; `on_stale` is called once for each trial
    failed for silence (Optuna's failed_trial_callback)."""
    url = storage_url(spec)
    engine: dict[str, Any] = {}
    if url.startswith("sqlite"):
        Path(url.removeprefix("sqlite:///")).parent.mkdir(parents=True, exist_ok=True)
        engine = {"connect_args": {"timeout": 120}}  # wait for another process's write instead of failing
    for attempt in range(8):
        try:
            return RDBStorage(
                url,
                engine_kwargs=engine,
                heartbeat_interval=max(1, round(spec.launcher.heartbeat_s)),
                grace_period=max(2, round(spec.launcher.grace_s)),
                heartbeat_stale_trial_callback=on_stale,
            )
        except ModuleNotFoundError as error:
            raise StorageUnreachable(
                f"the storage {redacted(url)} needs {error.name}: pip install -e '.[postgres]' for PostgreSQL"
            ) from None
        except (StorageInternalError, IntegrityError, OperationalError) as error:
            # two processes creating a new database's tables at once (one of them fails on the version row, or
            # finds SQLite locked): the second waits and opens what the first made. A server that is down stays down.
            cause = error.__cause__ or error
            reason = str(getattr(cause, "orig", None) or cause).strip().splitlines()[0]
            if not busy_or_racing(reason):
                raise StorageUnreachable(f"cannot open the sweep's storage {redacted(url)}: {reason}") from None
            time.sleep(0.5 * (attempt + 1))
        except SQLAlchemyError as error:  # a wrong host, user or database
            reason = str(getattr(error, "orig", None) or error).strip().splitlines()[0]
            raise StorageUnreachable(f"cannot open the sweep's storage {redacted(url)}: {reason}") from None
    raise StorageUnreachable(f"cannot open the sweep's storage {redacted(url)}: it stayed busy")


RACE_SIGNS = ("UNIQUE constraint", "database is locked", "already exists", "duplicate key")


def busy_or_racing(reason: str) -> bool:
    """A database error that another process creating the same tables at the same moment explains."""
    return any(sign in reason for sign in RACE_SIGNS)


@contextmanager
def one_taker(storage: RDBStorage) -> Iterator[None]:
    """Only one process at a time takes a trial from a SQLite storage. PostgreSQL locks the trial's row for the
    WAITING → RUNNING change (SELECT ... FOR UPDATE); SQLite has no row locks, and two processes can both read a
    trial as WAITING and both set it RUNNING (seen in the two-driver test). An flock on a file beside the database
    serialises the taking; the OS releases it when its holder dies, so it never goes stale."""
    url = storage.url
    if not url.startswith("sqlite:///"):
        yield
        return
    with open(url.removeprefix("sqlite:///") + ".take.lock", "a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


def taking_order(frozen: FrozenTrial) -> tuple[bool, int, int]:
    """Trials run again before new ones; each by its first number (then its own, for a trial enqueued twice)."""
    attrs = frozen.user_attrs
    return "resumes" not in attrs, attrs.get("root_trial", frozen.number), frozen.number


def pop_waiting(study: optuna.Study, storage: RDBStorage) -> tuple[int, int] | None:
    """Take one WAITING trial of the study and make it RUNNING — one atomic change in the storage, so a trial goes
    to exactly one worker — and return its number and storage id; None when none is left. (Optuna's `ask` would
    create a new trial when none waits: a study must not grow past its slots.) A trial run again (interrupted, or
    crashed and retried) is taken first, in the order of its first number: work begun, with a checkpoint to resume,
    is finished before new work starts, rather than waiting behind the whole queue."""
    study_id = storage.get_study_id_from_name(study.study_name)
    for attempt in range(20):
        try:
            with one_taker(storage):
                waiting = study.get_trials(deepcopy=False, states=(TrialState.WAITING,))
                for frozen in sorted(waiting, key=taking_order):
                    trial_id = storage.get_trial_id_from_study_id_trial_number(study_id, frozen.number)
                    try:
                        if not storage.set_trial_state_values(trial_id, state=TrialState.RUNNING):
                            continue
                    except UpdateFinishedTrialError:
                        continue
                    storage.record_heartbeat(trial_id)
                    return frozen.number, trial_id
                return None
        except StorageInternalError:
            time.sleep(0.2 * (attempt + 1))  # SQLite: another process held the write lock
    raise StorageUnreachable("the sweep's storage stayed busy while taking a trial")


def make_sampler(search: Search | None, space: dict, trial: int = 0) -> optuna.samplers.BaseSampler:
    """The search's sampler, seeded by `search.sampler_seed` and the number of the trial it draws for: workers
    then never draw the same values, and a sweep run again draws the same (given the same finished trials). A
    grid-only sweep's trials have every parameter fixed when enqueued."""
    if search is None:
        return optuna.samplers.RandomSampler(seed=trial)
    seed = search.sampler_seed * 1_000_003 + trial
    if search.sampler == "tpe":
        return optuna.samplers.TPESampler(seed=seed, n_startup_trials=min(10, max(2, search.n_trials // 3)))
    if search.sampler == "random":
        return optuna.samplers.RandomSampler(seed=seed)
    if search.sampler == "cmaes":
        return optuna.samplers.CmaEsSampler(seed=seed)
    if search.sampler == "qmc":
        return optuna.samplers.QMCSampler(seed=seed, scramble=True)
    return optuna.samplers.RandomSampler(seed=seed)  # `grid`: every point is enqueued with its values fixed


def grid_values(space: dict[str, Param]) -> dict[str, list[Any]]:
    """`sampler: grid`: each dimension's values — its choices, or its range in steps."""
    values = {}
    for name, param in space.items():
        if param.choices is not None:
            values[name] = list(param.choices)
        elif param.step is not None:
            count = round((param.high - param.low) / param.step) + 1
            cast = int if param.type == "int" else float
            values[name] = [cast(param.low + index * param.step) for index in range(count)]
        else:
            raise ConfigError(f"search.sampler = 'grid': search.space.{name} needs choices or a step.")
    return values


def make_pruner(pruner: Pruner) -> optuna.pruners.BasePruner:
    if pruner.kind == "median":
        return optuna.pruners.MedianPruner(n_startup_trials=2, n_warmup_steps=pruner.warmup_epochs)
    if pruner.kind == "successive_halving":
        return optuna.pruners.SuccessiveHalvingPruner(min_resource=pruner.min_resource)
    if pruner.kind == "hyperband":
        return optuna.pruners.HyperbandPruner(min_resource=pruner.min_resource)
    if pruner.kind == "wilcoxon":
        return optuna.pruners.WilcoxonPruner(p_threshold=pruner.p_threshold)
    return optuna.pruners.NopPruner()
