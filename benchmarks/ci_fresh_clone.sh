#!/usr/bin/env bash
# Time `.ci/run` (the README's two commands: install + demo, then the test suite, which builds the
# book) on a fresh clone of this checkout, as CI does, and record the result.
#
#   bash benchmarks/ci_fresh_clone.sh        # writes benchmarks/results/ci_fresh_clone.md
#
# The clone is made beside this checkout (so ../shared/data resolves as it does here) and removed after.
set -euo pipefail
here="$(cd "$(dirname "$0")/.." && pwd)"
clone="$(dirname "$here")/ci_fresh_clone.$$"
git clone -q "$here" "$clone"
trap 'rm -rf "$clone"' EXIT
start=$(date +%s)
(cd "$clone" && .ci/run) > "$clone.log" 2>&1 && rc=0 || rc=$?
wall=$(( $(date +%s) - start ))
summary=$(grep -E "^[0-9]+ (passed|failed)" "$clone.log" | tail -1 || true)
out="$here/benchmarks/results/ci_fresh_clone.md"
{
  echo "# \`.ci/run\` on a fresh clone"
  echo
  echo "$(date -u '+%Y-%m-%d %H:%M') UTC; commit $(git -C "$here" rev-parse --short HEAD); $(nproc) CPUs; GPU: none expected."
  echo
  echo "- exit status: $rc"
  echo "- wall time (install, demo, tests incl. the book build): $((wall / 60)) min $((wall % 60)) s"
  echo "- test suite: ${summary:-not reached}"
} > "$out"
rm -f "$clone.log"
cat "$out"
exit "$rc"
