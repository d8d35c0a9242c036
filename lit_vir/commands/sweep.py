"""`lit-vir sweep`: many `lit-vir fit` runs as one study — a grid, a search, or both — on Optuna, launched by submitit.

`run` starts a sweep or continues it (the same command again resumes what was interrupted and runs nothing twice),
`status` lists its trials, `report` writes its best trials, parameter importances and figures. A trial is an
ordinary run folder under `<out>/<name>/runs/`, so `lit-vir compare` reads a finished sweep unchanged.
"""

from __future__ import annotations

import sys

import jsonargparse
from rich.console import Console

from lit_vir.config import PARSER_MODE, HelpFormatter, config_errors, user_errors
from lit_vir.sweep.launch import run_sweep
from lit_vir.sweep.report import write_report
from lit_vir.sweep.spec import SweepSpec, absolute, spec_of, spec_parser
from lit_vir.sweep.status import status_table, trial_rows
from lit_vir.sweep.storage import StorageUnreachable, quiet_optuna
from lit_vir.sweep.studies import Plan
from lit_vir.sweep.worker import storage_of

__all__ = ["main"]

EXAMPLES = """\
examples:
  lit-vir sweep run -c configs/sweep/digits.yaml                      # a 4-trial grid on digits, 2 local workers
  lit-vir sweep run -c configs/sweep/digits_reservoir.yaml            # TPE over α, SD, N, ... with a median pruner
  lit-vir sweep run -c configs/sweep/digits.yaml --launcher.workers 1 # the same sweep, one worker (continues it)
  lit-vir sweep run -c configs/sweep/digits.yaml --launcher.retry_failed true  # after fixing a cause
  lit-vir sweep status -c configs/sweep/digits.yaml                   # every trial: state, parameters, value
  lit-vir sweep report -c configs/sweep/digits_reservoir.yaml         # best trials, importances, figures
  lit-vir sweep run -c configs/sweep/fmnist_lr.yaml --launcher.kind slurm --launcher.partition gpu \\
      --resources.gpus 1 --storage postgresql+psycopg2://me@db-host/sweeps   # password: PGPASSWORD or ~/.pgpass
  lit-vir sweep run -c configs/sweep/digits.yaml --print_config       # the merged spec, resolved
  lit-vir compare "sweeps/digits/runs/*/*"                            # a finished sweep's runs, compared

A spec (configs/sweep/*.yaml) names the base config pieces, a grid (rows of pieces and overrides × datasets ×
params × seeds) and/or a search space (uniform, log-uniform, int, categorical per dotted key; presets
reservoir, learning_rate, weight_decay), the sampler, the pruner, the metric and direction, the resources of one
trial and the launcher (local, slurm, inline). `lit-vir sweep run --help` lists every option.
"""

SUBCOMMANDS = {
    "run": "start the sweep, or continue it: what finished stays finished, what was interrupted resumes",
    "status": "a table of every trial: state, parameters, value, run folder, time",
    "report": "best trials, parameter importances, figures (PNG + Markdown) and TensorBoard's HPARAMS tab",
}


def parser() -> jsonargparse.ArgumentParser:
    top = jsonargparse.ArgumentParser(
        prog="lit-vir sweep",
        description=__doc__.split("\n\n")[0],
        epilog=EXAMPLES,
        formatter_class=HelpFormatter,
        parser_mode=PARSER_MODE,
    )
    subcommands = top.add_subcommands(dest="subcommand")
    for name, summary in SUBCOMMANDS.items():
        sub = spec_parser(f"lit-vir sweep {name}", summary, EXAMPLES)
        if name == "report":
            sub.add_argument("--top", type=int, default=10, help="how many of the best trials the report lists")
        subcommands.add_subcommand(name, sub, help=summary)
    return top


@user_errors()
def main(argv: list[str]) -> None:
    quiet_optuna()
    top = parser()
    with config_errors():
        arguments = top.parse_args(argv)
        name = arguments.subcommand
        sub = top._subcommands_action._name_parser_map[name]
        options = arguments[name]
        spec = spec_of(sub, options)
        spec.check()
    console = Console(width=None if sys.stdout.isatty() else 160)
    try:
        if name == "run":
            # `lit-vir fit` in this process, handed down to the sweep layer (which sits below the CLI); imported
            # here because lit_vir.cli imports this module when `lit-vir sweep` is called
            from lit_vir.cli import run

            with config_errors():
                unfinished = run_sweep(spec, run, console)
            show_status(spec, console)
            if unfinished and spec.launcher.kind != "slurm":
                raise SystemExit(1)
        elif name == "status":
            show_status(spec, console)
        else:
            write_report(spec, console, top=options.top)
    except StorageUnreachable as error:
        print(f"lit-vir: {error}", file=sys.stderr)
        raise SystemExit(1) from None


def show_status(spec: SweepSpec, console: Console) -> None:
    spec = absolute(spec)
    plan = Plan.of(spec)
    studies = plan.studies(storage_of(spec))
    if not studies:
        console.print(f"sweep {spec.name}: not started (no study in its storage); `lit-vir sweep run` starts it")
        return
    console.print(status_table(plan, trial_rows(plan, studies)))
