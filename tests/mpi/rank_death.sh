#!/usr/bin/env bash
# rank_death.sh <mpiexec command...> -- <program> <mode> <expected-message regex>
# Runs a job whose task kills its worker rank and checks what Open MPI (4.1, no fault
# tolerance) promises: the job ends, well within the bound; the launcher names the dead
# rank; the exit status is non-zero; and no rank of the job is left running.
set -u
launcher=()
while [ "$1" != "--" ]; do launcher+=("$1"); shift; done
shift
program=$1 mode=$2 expected=$3
dir=$(mktemp -d)
trap 'rm -rf "$dir"' EXIT
start=$(date +%s)
MPROC_TEST_PID_DIR=$dir timeout -k 5 60 "${launcher[@]}" "$program" "$mode" >"$dir/out" 2>&1
status=$?
elapsed=$(( $(date +%s) - start ))
cat "$dir/out"
fail() { echo "FAIL: $*"; exit 1; }
# timeout's own status (the launcher's is 128 + signal when a rank was killed: 137 for SIGKILL).
[ "$status" -ne 124 ] && [ "$elapsed" -lt 60 ] || fail "the job did not end within 60 s"
[ "$status" -ne 0 ] || fail "the job exited with status 0"
[ "$elapsed" -le 30 ] || fail "the job took ${elapsed} s to end"
grep -Eq "$expected" "$dir/out" || fail "no message matching '$expected'"
grep -q "unreachable" "$dir/out" && fail "the dead task returned"
ls "$dir"/*.pid >/dev/null 2>&1 || fail "no rank wrote its pid"
for file in "$dir"/*.pid; do
  pid=$(cat "$file")
  for _ in $(seq 50); do
    kill -0 "$pid" 2>/dev/null || continue 2
    sleep 0.1
  done
  fail "rank $(basename "$file" .pid) (pid $pid) is still running"
done
echo "PASS: status $status after ${elapsed} s; every rank has ended"
