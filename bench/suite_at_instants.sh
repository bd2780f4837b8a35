#!/bin/sh
# The whole test suite at the calendar's edges: the first hour of a month, the last hour of
# a month in Berlin, a leap day, the day clocks change in Europe. faketime moves the whole
# process (subprocesses, servers and the browser included; on SQLite the database's clock
# too). The few tests whose threads wait with a timeout hang under libfaketime 0.9.10 (it
# does not fake sem_clockwait): they run at the same instant with time-machine instead.
#   sh bench/suite_at_instants.sh [instant ...]    extra pytest arguments: PYTEST_ARGS=...
# Each run's output: artifacts/calendar/<instant>.log; its summary line is printed.
set -u
PY=${PY:-.venv/bin/python}
OUT=artifacts/calendar
mkdir -p "$OUT"
[ $# -gt 0 ] || set -- "2026-12-01 00:30:00" "2027-01-31 22:30:00" "2028-02-29 12:00:00" \
  "2027-03-28 01:30:00"
status=0
run() {  # label, log, command...
  label=$1 log=$2
  shift 2
  echo "== $label"
  "$@" >"$log" 2>&1 || status=1
  grep -E "^(FAILED|ERROR) " "$log"
  tail -n 1 "$log"
}
for at in "$@"; do
  name=$(echo "$at" | tr ' :' '_-')
  run "the suite at $at UTC (faketime)" "$OUT/$name.log" \
    faketime -f "@$at" $PY -m pytest -q -p no:cacheprovider -m "not thread_timeouts" -rs ${PYTEST_ARGS:-}
  run "the tests that wait in threads, at $at UTC (time-machine)" "$OUT/$name-threads.log" \
    $PY -m pytest -q -p no:cacheprovider -m thread_timeouts --clock-at "$at" -rs ${PYTEST_ARGS:-}
done
exit $status
