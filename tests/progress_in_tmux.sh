#!/usr/bin/env bash
# Runs the progress example in a real terminal (a tmux pane) and reads the screen as a person
# would see it (tmux capture-pane): the bars are drawn in place, one line per map, each left
# with its outcome; nothing else of them remains on the screen. Exits 77 (ctest: skipped) when
# tmux is not installed.
set -euo pipefail
program=$1
command -v tmux >/dev/null 2>&1 || { echo "tmux is not installed: skipped"; exit 77; }

socket="mproc-progress-test-$$"
cleanup() { tmux -L "$socket" kill-server >/dev/null 2>&1 || true; }
trap cleanup EXIT
# A private server (-L) with no configuration (-f /dev/null), a 100x40 pane. The pane stays
# open after the program (the sleep) so that its screen can be read.
tmux -L "$socket" -f /dev/null new-session -d -x 100 -y 40 "$program; echo \"EXIT=\$?\"; sleep 60"

screen=""
for _ in $(seq 1 600); do  # up to 60 s
  screen=$(tmux -L "$socket" capture-pane -p)
  grep -q "EXIT=" <<<"$screen" && break
  sleep 0.1
done
printf '%s\n' "--- the screen ---" "$screen" "---"

fail() { echo "FAILED: $*"; exit 1; }
grep -q "EXIT=0" <<<"$screen" || fail "the example did not exit with 0"
grep -Eq '^squares 100%\|#+\| 300/300 \[[0-9:]+, [0-9.]+ items/s\] done$' <<<"$screen" ||
  fail "no finished 'squares' bar"
grep -Eq '^stream  [0-9]+ items \[[0-9:]+, [0-9.]+ items/s\] stopped$' <<<"$screen" ||
  fail "no stopped 'stream' bar (an endless input: a count, no total)"
grep -Eq '^checked +[0-9]+%\|#*-+\| [0-9]+/300 \[[0-9:]+, [0-9.]+ items/s\] FAILED: item 150 is refused$' <<<"$screen" ||
  fail "no failed 'checked' bar"
# Redrawn in place: each bar's line is on the screen once, however often it was drawn.
[ "$(grep -Ec '^squares +[0-9]+%' <<<"$screen")" -eq 1 ] || fail "the squares bar is on the screen more than once"
[ "$(grep -Ec '^stream +[0-9]+ items' <<<"$screen")" -eq 1 ] || fail "the stream bar is on the screen more than once"
[ "$(grep -Ec '^checked +[0-9]+%' <<<"$screen")" -eq 1 ] || fail "the checked bar is on the screen more than once"
grep -q "worker insights" <<<"$screen" || fail "no insights table"
echo "ok"
