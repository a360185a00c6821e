#!/usr/bin/env bash
# Runs vitest while another process keeps every core busy, to flush out tests
# that pass only on an idle machine. Arguments go to `vitest run` unchanged.
#   bash scripts/test-under-load.sh                         # the whole suite
#   bash scripts/test-under-load.sh test/integration/runner-transports.test.ts
#   RUNS=3 bash scripts/test-under-load.sh                  # three in a row, under one load
# STRESS_WORKERS=N sets how many busy threads (default: one per core); RUNS=N
# runs vitest N times in a row and stops at the first failure.
# Rank processes load dist/, so build first (npm run build:ts).
set -u
cd "$(dirname "$0")/.."
root=$(pwd -P)
workers=${STRESS_WORKERS:-$(node -p 'require("node:os").availableParallelism()')}
runs=${RUNS:-1}

node scripts/stress-cpu.mjs "$workers" &
stress=$!
# Never leave the load running, however this script ends.
trap 'kill "$stress" 2>/dev/null; wait "$stress" 2>/dev/null' EXIT
trap 'exit 130' INT TERM

# This script's own ancestors (a shell that runs it in a loop) are not leftovers.
ancestors=" "
pid=$$
while [ "$pid" -gt 1 ] 2>/dev/null; do
  ancestors+="$pid "
  # The parent pid is the 2nd field after the command name, which may hold spaces.
  pid=$(sed 's/.*) //' "/proc/$pid/stat" 2>/dev/null | cut -d' ' -f2)
  pid=${pid:-1}
done

# Processes started from this checkout that outlived a run load the next one
# (or belong to another run from this checkout going on meanwhile).
report_leftovers() {
  local dir pid cmd
  for dir in /proc/[0-9]*; do
    pid=${dir#/proc/}
    [ "$pid" = "$stress" ] && continue
    case "$ancestors" in *" $pid "*) continue ;; esac
    [ "$(readlink "$dir/cwd" 2>/dev/null)" = "$root" ] || continue
    cmd=$(tr '\0' ' ' < "$dir/cmdline" 2>/dev/null)
    case "$cmd" in *vitest*|*esbuild*|"") continue ;; esac
    # Ranks, fixture servers and browsers; not the shell pipeline around this script.
    case "$cmd" in *node*|*chrom*) echo "test-under-load: left running: $pid $cmd" ;; esac
  done
}

status=0
for run in $(seq 1 "$runs"); do
  started=$(date +%s)
  npx vitest run "$@"
  status=$?
  echo "test-under-load: run $run of $runs: vitest exited $status after $(( $(date +%s) - started )) s with $workers busy threads on $(nproc) cores"
  report_leftovers
  [ "$status" -eq 0 ] || break
done
exit $status
