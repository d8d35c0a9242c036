#!/usr/bin/env bash
# Mutation testing of the maths modules with mutmut 3 (docs/testing.md says how to read the result). Not in CI.
#
#   scripts/mutation.sh                                                          # every module below
#   scripts/mutation.sh lit_vir/analysis/lyapunov.py lit_vir/analysis/memory.py  # only these
#   MUTATION_RERUN=1 scripts/mutation.sh lit_vir/models/vir.py                   # its survivors, with new tests
#
# Each module is mutated alone, in a fresh copy of the project under mutants/<module>/ (mutmut copies it once
# more into mutants/<module>/mutants/), against the fast tests that exercise it (SELECTION). The shared mutmut
# settings are the [tool.mutmut] table of pyproject.toml; this script adds `only_mutate` and the test
# selection to the copy's table. Runs on one core (MUTATION_CORE, default 0), niced, one thread, one worker.
# Writes mutants/<module>.txt (score, then every survivor's diff) and mutants/<module>.json; prints the score.
# MUTATION_RERUN=1 keeps the module's copy from an earlier run (refused if lit_vir/ has changed since), copies the
# current tests/ into it and reruns only the mutants that survived: tests that were only added cannot revive a
# killed mutant. The selection stays the earlier run's (mutmut forgets the other mutants' results when it changes):
# after adding a test file to SELECTION, run the module again without MUTATION_RERUN. The time reported for a rerun
# is that of the earlier run plus the rerun.
set -euo pipefail
cd "$(dirname "$0")/.."

# The fast tests of each module: pytest arguments, as mutmut's pytest_add_cli_args_test_selection. mutmut then
# runs, for each mutant, only the selected tests that call the mutated function.
# The quantisation package's unit tests (its own quantize command runs fits and are left out).
QUANTIZATION_TESTS="tests/test_quantizers.py tests/test_quantization.py tests/test_quantization_modules.py
  tests/test_quantization_levels.py tests/test_mixed_precision.py -k 'not command and not help'"
declare -A SELECTION=(
  [lit_vir/models/reservoir.py]="tests/test_reservoir.py tests/test_engine.py tests/test_recurrence.py
    tests/test_ablations.py tests/test_vir_oracle.py tests/test_analysis.py tests/test_topology.py
    tests/test_reservoirpy_oracle.py
    -k 'not reference_no_reservoir and not bench and not training_with and not cannot_fit and not augmented'"
  [lit_vir/models/topology.py]="tests/test_topology.py tests/test_reservoir.py tests/test_analysis.py
    tests/test_reservoirpy_oracle.py"
  [lit_vir/models/vir.py]="tests/test_vir.py tests/test_vir_oracle.py tests/test_ablations.py tests/test_engine.py
    tests/test_analysis.py -k 'not reference_settings and not reference_no_reservoir and not bench
    and not training_with and not cannot_fit and not augmented'"
  [lit_vir/models/vit.py]="tests/test_vit.py tests/test_revit.py tests/test_vit_slim.py
    -k 'not command and not piece_trains'"
  [lit_vir/models/revit.py]="tests/test_revit.py -k 'not command and not piece_trains'"
  [lit_vir/quantization/quantizers.py]="tests/test_quantizers.py tests/test_quantization.py -k 'not command and not help'"
  [lit_vir/quantization/modules.py]="tests/test_quantization.py tests/test_quantization_modules.py
    -k 'not command and not help'"
  [lit_vir/quantization/mixed_precision.py]="tests/test_mixed_precision.py tests/test_quantization.py
    -k 'not command and not help'"
  [lit_vir/analysis/lyapunov.py]="tests/test_analysis.py"
  [lit_vir/analysis/memory.py]="tests/test_analysis.py"
  [lit_vir/analysis/small_world.py]="tests/test_analysis.py"
  [lit_vir/analysis/spectrum.py]="tests/test_analysis.py tests/test_recurrence.py"
  [lit_vir/analysis/echo_state.py]="tests/test_analysis.py"
  [lit_vir/analysis/states.py]="tests/test_analysis.py tests/test_recurrence.py"
  [lit_vir/analysis/drives.py]="tests/test_analysis.py tests/test_recurrence.py"
  [lit_vir/analysis/cores.py]="tests/test_analysis.py"
  [lit_vir/analysis/report.py]="tests/test_analysis.py tests/test_dynamics_command.py tests/test_dynamics_callbacks.py
    -k 'not ddp and not help'"
  [lit_vir/analysis/attention.py]="tests/test_revit.py tests/test_vit.py -k 'not piece_trains'"
  [lit_vir/analysis/figures.py]="tests/test_figures.py tests/test_dynamics_callbacks.py -k 'not ddp'"
  [lit_vir/quantization/calibration.py]="$QUANTIZATION_TESTS"
  [lit_vir/quantization/gelu.py]="$QUANTIZATION_TESTS"
  [lit_vir/quantization/observers.py]="$QUANTIZATION_TESTS"
  [lit_vir/quantization/precision.py]="$QUANTIZATION_TESTS"
  [lit_vir/quantization/size.py]="$QUANTIZATION_TESTS"
  [lit_vir/quantization/smoothing.py]="$QUANTIZATION_TESTS"
  [lit_vir/quantization/softmax.py]="$QUANTIZATION_TESTS"
  [lit_vir/robustness/metrics.py]="tests/test_robustness.py"
  [lit_vir/robustness/perturb.py]="tests/test_robustness.py tests/test_timm_model.py -k 'not pretrained'"
  [lit_vir/robustness/report.py]="tests/test_robustness.py tests/test_robustness_report.py"
  [lit_vir/data/base.py]="tests/test_data.py tests/test_data_loaders.py tests/test_recipe.py tests/test_cifar10c.py tests/test_corruptions.py
    -k 'not config'"
  [lit_vir/data/files.py]="tests/test_data.py tests/test_cifar10c.py"
  [lit_vir/data/mnist.py]="tests/test_data.py"
  [lit_vir/data/cifar.py]="tests/test_data.py tests/test_cifar_files.py"
  [lit_vir/data/digits.py]="tests/test_data.py tests/test_data_loaders.py tests/test_corruptions.py
    -k 'test_data or digits or corrupted'"
  [lit_vir/training/schedulers.py]="tests/test_image_classifier.py tests/test_recipe.py tests/test_cli.py
    -k 'test_image_classifier or test_recipe or warmup'"
  [lit_vir/training/mixing.py]="tests/test_recipe.py tests/test_image_classifier.py"
  [lit_vir/training/callbacks/ema.py]="tests/test_recipe_runs.py tests/test_recipe.py"
  [lit_vir/training/weight_decay.py]="tests/test_recipe.py tests/test_image_classifier.py tests/test_vit.py
    tests/test_revit.py -k 'not command and not piece_trains'"
  [lit_vir/training/labels.py]="tests/test_labels.py tests/test_compare.py tests/test_run_records.py
    tests/test_topology_runs.py -k 'not taskset_gave_the_run and not dynamics and not composes'"
  [lit_vir/models/vitae.py]="tests/test_vitae.py tests/test_recipe.py -k 'not fast_dev_run'"
  [lit_vir/models/mobilevit.py]="tests/test_mobilevit.py tests/test_recipe.py -k 'not fast_dev_run'"
  [lit_vir/models/vit_slim.py]="tests/test_vit_slim.py -k 'not command_line and not help'"
  [lit_vir/models/timm_model.py]="tests/test_timm_model.py tests/test_recipe.py -k 'not pretrained'"
  [lit_vir/models/counting.py]="tests/test_counting.py tests/test_vir.py tests/test_vit.py tests/test_ablations.py tests/test_run_records.py
    tests/test_recipe_runs.py -k 'count or flops or param'"
  [lit_vir/models/state_cache.py]="tests/test_state_cache.py tests/test_engine.py tests/test_vir.py
    -k 'cache and not cannot_fit'"
  [lit_vir/models/drop_path.py]="tests/test_vit.py tests/test_vir.py tests/test_revit.py -k 'drop and not command'"
  [lit_vir/data/corrupted.py]="tests/test_corrupted_data.py tests/test_corruptions.py tests/test_robustness.py
    -k 'test_corrupted_data or corrupted or Corrupted or corruption'"
  [lit_vir/data/cifar10c.py]="tests/test_cifar10c.py tests/test_cifar_files.py"
  [lit_vir/training/guards.py]="tests/test_guards.py tests/test_image_classifier.py tests/test_reliability.py
    -k 'not ddp'"
  [lit_vir/training/rng.py]="tests/test_rng.py tests/test_image_classifier.py tests/test_recipe_runs.py"
  [lit_vir/training/checkpoints.py]="tests/test_checkpoints.py tests/test_resume.py tests/test_reliability.py
    tests/test_recipe_runs.py tests/test_vit_slim.py -k 'not ddp and not command_line and not signal_mid_epoch'"
  [lit_vir/training/slim.py]="tests/test_vit_slim.py -k 'not command_line and not help'"
  [lit_vir/training/callbacks/corruption_report.py]="tests/test_corruption_report_callback.py tests/test_robustness.py
    -k 'test_corruption_report_callback or corruptions'"
  [lit_vir/training/callbacks/dynamics.py]="tests/test_dynamics_callbacks.py -k 'not ddp'"
  [lit_vir/training/callbacks/flops.py]="tests/test_flops_callback.py tests/test_run_records.py
    tests/test_recipe_runs.py -k flops"
  [lit_vir/training/callbacks/reservoir_checksum.py]="tests/test_small_callbacks.py tests/test_reliability.py -k 'not ddp'"
  [lit_vir/training/callbacks/resources.py]="tests/test_resources.py tests/test_reliability.py tests/test_run_records.py
    -k 'not ddp and not taskset_gave'"  # the taskset test runs the installed lit-vir, outside mutmut's copy
  [lit_vir/training/callbacks/revit.py]="tests/test_small_callbacks.py tests/test_revit.py -k 'alpha or piece_trains'"
  [lit_vir/training/callbacks/state_cache.py]="tests/test_small_callbacks.py tests/test_engine.py -k 'cache'"
  [lit_vir/commands/bench.py]="tests/test_tool_bench.py tests/test_engine.py tests/test_tool_configs.py
    -k 'test_tool_bench or (bench and not writes_every_field and not bad_values)'"
    # those two tests run bench's worker subprocess, in whose folder mutmut's trampoline finds no configuration
  [lit_vir/models/ridge.py]="tests/test_ridge.py tests/test_reservoirpy_oracle.py -k 'not fit and not command_line'"
  [lit_vir/training/ridge.py]="tests/test_ridge.py -k 'not command_line'"  # a logging error inside mutmut's copy
  [lit_vir/analysis/uncertainty.py]="tests/test_uncertainty.py tests/test_robustness_intervals.py"
  [lit_vir/robustness/intervals.py]="tests/test_robustness_intervals.py"
  [lit_vir/commands/compare.py]="tests/test_compare.py tests/test_compare_rows.py"
  [lit_vir/commands/runs.py]="tests/test_compare_runs.py tests/test_compare.py tests/test_compare_rows.py"
  [lit_vir/commands/robustness_table.py]="tests/test_robustness_table.py tests/test_compare.py
    tests/test_robustness_intervals.py"
  [lit_vir/commands/slim.py]="tests/test_vit_slim.py -k 'command_line'"
  [lit_vir/commands/quantize.py]="tests/test_quantize_report.py tests/test_quantization.py
    -k 'test_quantize_report or (command and not slow)'"
  [lit_vir/training/module.py]="tests/test_image_classifier.py tests/test_recipe.py tests/test_cli.py
    tests/test_reliability.py -k 'test_image_classifier or soft_targets or warmup or bf16'"
)
# The corruption library: every module against the corruption tests.
CORRUPTIONS=(lit_vir/data/corruptions/{__init__,contract,sampling,noise,blur,weather,digital,filters,colour,textures}.py)
for module in "${CORRUPTIONS[@]}"; do
  SELECTION[$module]="tests/test_corruptions.py tests/test_corruption_references.py"
done
ORDER=(
  lit_vir/models/reservoir.py lit_vir/models/topology.py lit_vir/models/vir.py lit_vir/models/vit.py
  lit_vir/models/revit.py lit_vir/quantization/quantizers.py lit_vir/quantization/modules.py
  lit_vir/quantization/mixed_precision.py lit_vir/analysis/lyapunov.py lit_vir/analysis/memory.py
  lit_vir/training/module.py lit_vir/analysis/small_world.py lit_vir/analysis/spectrum.py
  lit_vir/analysis/echo_state.py lit_vir/analysis/states.py lit_vir/analysis/drives.py lit_vir/analysis/cores.py
  lit_vir/analysis/report.py lit_vir/analysis/attention.py lit_vir/analysis/figures.py
  lit_vir/models/ridge.py lit_vir/training/ridge.py
  lit_vir/analysis/uncertainty.py lit_vir/robustness/intervals.py lit_vir/commands/compare.py
  lit_vir/commands/runs.py lit_vir/commands/robustness_table.py
  lit_vir/quantization/calibration.py lit_vir/quantization/gelu.py lit_vir/quantization/observers.py
  lit_vir/quantization/precision.py lit_vir/quantization/size.py lit_vir/quantization/smoothing.py
  lit_vir/quantization/softmax.py lit_vir/robustness/metrics.py lit_vir/robustness/perturb.py
  lit_vir/robustness/report.py lit_vir/data/base.py lit_vir/data/files.py lit_vir/data/mnist.py
  lit_vir/data/cifar.py lit_vir/data/digits.py lit_vir/training/schedulers.py lit_vir/training/mixing.py
  lit_vir/training/callbacks/ema.py lit_vir/training/weight_decay.py lit_vir/training/labels.py
  lit_vir/models/vitae.py lit_vir/models/mobilevit.py lit_vir/models/vit_slim.py lit_vir/models/timm_model.py
  lit_vir/models/counting.py lit_vir/models/state_cache.py lit_vir/models/drop_path.py lit_vir/data/corrupted.py
  lit_vir/data/cifar10c.py "${CORRUPTIONS[@]}" lit_vir/training/guards.py lit_vir/training/rng.py
  lit_vir/training/checkpoints.py lit_vir/training/slim.py lit_vir/training/callbacks/corruption_report.py
  lit_vir/training/callbacks/dynamics.py lit_vir/training/callbacks/flops.py
  lit_vir/training/callbacks/reservoir_checksum.py lit_vir/training/callbacks/resources.py
  lit_vir/training/callbacks/revit.py lit_vir/training/callbacks/state_cache.py lit_vir/commands/bench.py
  lit_vir/commands/slim.py lit_vir/commands/quantize.py
)

command -v mutmut > /dev/null || { echo "scripts/mutation.sh: mutmut not found; pip install -e '.[dev]'" >&2; exit 2; }
modules=("$@")
[[ ${#modules[@]} -gt 0 ]] || modules=("${ORDER[@]}")
for module in "${modules[@]}"; do
  if [[ -z ${SELECTION[$module]+set} ]]; then
    echo "scripts/mutation.sh: no test selection for '$module'; choose from: ${ORDER[*]}" >&2
    exit 2
  fi
done

commit=$(git rev-parse --short HEAD)$(git diff --quiet HEAD -- lit_vir tests || echo "+uncommitted")
for module in "${modules[@]}"; do
  name=${module%.py}
  name=${name//\//.}  # lit_vir.analysis.lyapunov
  work=mutants/$name
  mutants_named=()
  earlier=0
  if [[ -n ${MUTATION_RERUN:-} ]]; then
    [[ -f $work.json ]] || { echo "scripts/mutation.sh: MUTATION_RERUN needs an earlier run ($work.json)" >&2; exit 2; }
    diff -rq -x __pycache__ lit_vir "$work/lit_vir" > /dev/null \
      || { echo "scripts/mutation.sh: lit_vir/ changed since $work was made; run without MUTATION_RERUN" >&2; exit 2; }
    mapfile -t mutants_named < <(python scripts/mutation_score.py survivors "$work.json")
    earlier=$(python scripts/mutation_score.py seconds "$work.json")
    for copy in "$work" "$work/mutants"; do
      rm -rf "$copy/tests" && cp -a tests "$copy/"
      find "$copy/tests" -name __pycache__ -prune -exec rm -rf {} +
    done
    echo "== $module: rerunning its ${#mutants_named[@]} survivors (log: $work.log)"
  else
    rm -rf "$work"
    mkdir -p "$work"
    cp -a lit_vir tests configs pyproject.toml "$work"/
    find "$work" -name __pycache__ -prune -exec rm -rf {} +
    python scripts/mutation_score.py configure "$work/pyproject.toml" "$module" "${SELECTION[$module]}"
    echo "== $module: mutmut run (log: $work.log)"
  fi
  started=$SECONDS
  # mutmut exits non-zero when the clean tests fail; the score step then reports no results
  if [[ -z ${MUTATION_RERUN:-} || ${#mutants_named[@]} -gt 0 ]]; then
    (cd "$work" && env -u PYTHONPATH OMP_NUM_THREADS=1 nice -n 10 taskset -c "${MUTATION_CORE:-0}" \
      mutmut run --max-children 1 "${mutants_named[@]}") > "$work.log" 2>&1 || echo "   mutmut failed: see $work.log" >&2
  fi
  python scripts/mutation_score.py score "$work" "$module" "$commit" "$((earlier + SECONDS - started))" \
    "${MUTATION_RERUN:+MUTATION_RERUN=1 }scripts/mutation.sh $module"
done
