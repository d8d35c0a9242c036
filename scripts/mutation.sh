#!/usr/bin/env bash
# Mutation testing of the maths modules with mutmut 3 (docs/testing.md says how to read the result). Not in CI.
#
#   scripts/mutation.sh                                                          # every module below
#   scripts/mutation.sh lit_vir/analysis/lyapunov.py lit_vir/analysis/memory.py  # only these
#
# Each module is mutated alone, in a fresh copy of the project under mutants/<module>/ (mutmut copies it once
# more into mutants/<module>/mutants/), against the fast tests that exercise it (SELECTION). The shared mutmut
# settings are the [tool.mutmut] table of pyproject.toml; this script adds `only_mutate` and the test
# selection to the copy's table. Runs on one core (MUTATION_CORE, default 0), niced, one thread, one worker.
# Writes mutants/<module>.txt (score, then every survivor's diff) and mutants/<module>.json; prints the score.
set -euo pipefail
cd "$(dirname "$0")/.."

# The fast tests of each module: pytest arguments, as mutmut's pytest_add_cli_args_test_selection. mutmut then
# runs, for each mutant, only the selected tests that call the mutated function.
declare -A SELECTION=(
  [lit_vir/models/reservoir.py]="tests/test_reservoir.py tests/test_engine.py tests/test_analysis.py
    -k 'not bench and not training_with and not cannot_fit and not augmented'"
  [lit_vir/models/topology.py]="tests/test_topology.py tests/test_reservoir.py tests/test_analysis.py"
  [lit_vir/models/vir.py]="tests/test_vir.py tests/test_engine.py tests/test_analysis.py
    -k 'not reference_settings and not bench and not training_with and not cannot_fit and not augmented'"
  [lit_vir/models/vit.py]="tests/test_vit.py tests/test_revit.py tests/test_vit_slim.py
    -k 'not command and not piece_trains'"
  [lit_vir/models/revit.py]="tests/test_revit.py -k 'not command and not piece_trains'"
  [lit_vir/quantization/quantizers.py]="tests/test_quantization.py -k 'not command and not help'"
  [lit_vir/quantization/modules.py]="tests/test_quantization.py -k 'not command and not help'"
  [lit_vir/quantization/mixed_precision.py]="tests/test_quantization.py -k 'not command and not help'"
  [lit_vir/analysis/lyapunov.py]="tests/test_analysis.py"
  [lit_vir/analysis/memory.py]="tests/test_analysis.py"
  [lit_vir/training/module.py]="tests/test_cli.py tests/test_resume.py tests/test_reliability.py
    -k 'warmup or tensorboard or round_trip or two_epochs or last_checkpoint or bf16'"
)
ORDER=(
  lit_vir/models/reservoir.py lit_vir/models/topology.py lit_vir/models/vir.py lit_vir/models/vit.py
  lit_vir/models/revit.py lit_vir/quantization/quantizers.py lit_vir/quantization/modules.py
  lit_vir/quantization/mixed_precision.py lit_vir/analysis/lyapunov.py lit_vir/analysis/memory.py
  lit_vir/training/module.py
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
  rm -rf "$work"
  mkdir -p "$work"
  cp -a lit_vir tests configs pyproject.toml "$work"/
  find "$work" -name __pycache__ -prune -exec rm -rf {} +
  python scripts/mutation_score.py configure "$work/pyproject.toml" "$module" "${SELECTION[$module]}"
  echo "== $module: mutmut run (log: $work.log)"
  started=$SECONDS
  # mutmut exits non-zero when the clean tests fail; the score step then reports no results
  (cd "$work" && env -u PYTHONPATH OMP_NUM_THREADS=1 nice -n 10 taskset -c "${MUTATION_CORE:-0}" \
    mutmut run --max-children 1) > "$work.log" 2>&1 || echo "   mutmut failed: see $work.log" >&2
  python scripts/mutation_score.py score "$work" "$module" "$commit" "$((SECONDS - started))" \
    "scripts/mutation.sh $module"
done
