#!/usr/bin/env bash
# Runs vitest while another process keeps every core busy, to flush out tests
# that pass only on an idle machine. Arguments go to `vitest run` unchanged.
#   bash scripts/test-under-load.sh                         # the whole suite
#   bash scripts/test-under-load.sh test/integration/runner-transports.test.ts
# STRESS_WORKERS=N sets how many busy threads (default: one per core).
# Rank processes load dist/, so build first (npm run build:ts).
set -u
cd "$(dirname "$0")/.."
root=$(pwd -P)
workers=${STRESS_WORKERS:-$(node -p 'require("node:os").availableParallelism()')}

node scripts/stress-cpu.mjs "$workers" &
stress=$!
# Never leave the load running, however this script ends.
trap 'kill "$stress" 2>/dev/null; wait "$stress" 2>/dev/null' EXIT
trap 'exit 130' INT TERM

started=$(date +%s)
npx vitest run "$@"
status=$?
echo "test-under-load: vitest exited $status after $(( $(date +%s) - started )) s with $workers busy threads on $(nproc) cores"

# Processes started from this checkout that outlived the run load the next one.
# (This script's own ancestors, e.g. a shell that runs it in a loop, are not leftovers.)
ancestors=" "
pid=$$
while [ "$pid" -gt 1 ] 2>/dev/null; do
  ancestors+="$pid "
  # The parent pid is the 2nd field after the command name, which may hold spaces.
  pid=$(sed 's/.*) //' "/proc/$pid/stat" 2>/dev/null | cut -d' ' -f2)
  pid=${pid:-1}
done
for dir in /proc/[0-9]*; do
  pid=${dir#/proc/}
  [ "$pid" = "$stress" ] && continue
  case "$ancestors" in *" $pid "*) continue ;; esac
  [ "$(readlink "$dir/cwd" 2>/dev/null)" = "$root" ] || continue
  cmd=$(tr '\0' ' ' < "$dir/cmdline" 2>/dev/null)
  case "$cmd" in *vitest*|"") continue ;; esac
  echo "test-under-load: left running: $pid $cmd"
done
exit $status
