#!/usr/bin/env bash
# Faults as a user meets them (issue 17 items 1 and 9): a write the file size limit (RLIMIT_FSIZE)
# or a full file system stops, SIGINT/SIGTERM during synth-trace, trace, certify, check
# --recompute, report and attention, a truncated or growing certificate, a trace truncated by
# another process while it is read (SIGBUS on its mapping). Each must exit with the code that says
# what happened (5 write failed, 130/143 interrupted, 3 bad input), print one line naming the
# file, and leave nothing at the destination and no *.partial file.
# Usage: faults_test.sh HNF_VERIFY SOURCE_DIR WORKDIR HAVE_Z3(0|1)
set -uo pipefail
bin=$1
src=$2
work=$3
have_z3=$4
rm -rf "$work"
mkdir -p "$work"
failures=0

fail() {
  echo "FAIL: $*" >&2
  failures=$((failures + 1))
}

# run_expect CODE MESSAGE_PART [--fsize=N] hnf-verify args...: runs hnf-verify (under the file
# size limit, if given) with stderr in $work/err; checks the exit code, that stderr is exactly one
# line and that it contains MESSAGE_PART. stderr goes through a pipe: the limit also applies to
# a regular file it were redirected to.
run_expect() {
  local want=$1 part=$2
  shift 2
  local -a limit=()
  if [[ ${1:-} == --fsize=* ]]; then
    limit=(prlimit "$1" --)
    shift
  fi
  "${limit[@]}" "$bin" "$@" 2>&1 >/dev/null | cat >"$work/err"
  local got=${PIPESTATUS[0]}
  local what="hnf-verify $* ${limit[*]:+(under ${limit[1]})}"
  [[ $got == "$want" ]] || fail "$what: exit $got, expected $want; stderr: $(cat "$work/err")"
  local lines
  lines=$(wc -l <"$work/err")
  [[ $lines == 1 ]] || fail "$what: $lines stderr lines, expected one: $(cat "$work/err")"
  grep -qF -- "$part" "$work/err" || fail "$what: stderr lacks '$part': $(cat "$work/err")"
}

# expect_absent PATH...: neither the file nor its partial file exists.
expect_absent() {
  local p
  for p in "$@"; do
    [[ ! -e $p ]] || fail "$p exists after a failed run"
    [[ ! -e $p.partial ]] || fail "$p.partial was left behind"
  done
}

# no_partials DIR: no *.partial file anywhere under DIR.
no_partials() {
  local left
  left=$(find "$1" -name '*.partial' | head -3)
  [[ -z $left ]] || fail "partial files left: $left"
}

# sig_caught PID SIGNAL: whether the process has installed a handler for SIGNAL (SigCgt in
# /proc), i.e. whether it is inside a cancellable stretch.
sig_caught() {
  local mask
  mask=$(awk '/^SigCgt:/ {print $2}' "/proc/$1/status" 2>/dev/null) || return 1
  [[ -n $mask ]] && (((16#$mask >> ($2 - 1)) & 1))
}

# interrupt SIGNAL WANT_CODE WANT_WORD OUT hnf-verify args...: starts the command, waits until
# its signal handler is installed, delivers SIGNAL, checks the exit code, the one stderr line
# and that OUT (and OUT.partial) do not exist.
interrupt() {
  local signal=$1 want=$2 word=$3 out=$4
  shift 4
  # Job control on: a background job of a script would otherwise start with SIGINT ignored,
  # and hnf-verify keeps an ignored SIGINT ignored.
  set -m
  "$bin" "$@" >"$work/out" 2>"$work/err" &
  set +m
  local pid=$! waited=0
  until sig_caught "$pid" "$signal"; do
    if ! kill -0 "$pid" 2>/dev/null || ((waited >= 200)); then
      fail "hnf-verify $1: never installed a handler for signal $signal"
      kill -KILL "$pid" 2>/dev/null
      wait "$pid" 2>/dev/null
      return
    fi
    sleep 0.05
    waited=$((waited + 1))
  done
  sleep 0.1  # inside the long loop, past the set-up
  kill "-$signal" "$pid"
  # It must stop at its next cancellation point, not run on (a 3 GB trace, a long certify).
  waited=0
  while kill -0 "$pid" 2>/dev/null && ((waited < 600)); do
    sleep 0.05
    waited=$((waited + 1))
  done
  if kill -0 "$pid" 2>/dev/null; then
    fail "hnf-verify $1: still running 30 s after signal $signal"
    kill -KILL "$pid"
  fi
  wait "$pid"
  local got=$?
  [[ $got == "$want" ]] || fail "hnf-verify $1 interrupted by signal $signal: exit $got, expected $want; stderr: $(cat "$work/err")"
  grep -qx "hnf-verify: interrupted by $word" "$work/err" ||
    fail "hnf-verify $1: stderr is not 'hnf-verify: interrupted by $word': $(cat "$work/err")"
  expect_absent "$out"
}

# The test hook HNF_TEST_PAUSE_AT_FIRST_READ=NAME (proofs/safetensors.h; not for users) makes
# hnf-verify stop itself (SIGSTOP) the first time it reads tensor data of the mapped file named
# NAME, in the middle of its work: the test then truncates that file, or delivers a signal, at
# that known point and sends SIGCONT. Nothing depends on timing.

# start_paused NAME hnf-verify args...: starts the command (job control on, as in interrupt)
# and waits until it has stopped at its first read of NAME; its pid is left in $paused_pid. Returns 1
# (and fails) when it never stops.
start_paused() {
  local name=$1
  shift
  set -m
  HNF_TEST_PAUSE_AT_FIRST_READ=$name "$bin" "$@" >"$work/out" 2>"$work/err" &
  set +m
  paused_pid=$!
  local waited=0 state
  while :; do
    state=$(sed 's/.*) //' "/proc/$paused_pid/stat" 2>/dev/null | cut -d' ' -f1)
    [[ $state == T ]] && return 0
    if [[ -z $state || $state == Z ]] || ((waited >= 600)); then
      fail "hnf-verify $1: never stopped at its first read of $name; stderr: $(cat "$work/err")"
      kill -KILL "$paused_pid" 2>/dev/null
      wait "$paused_pid" 2>/dev/null
      return 1
    fi
    sleep 0.05
    waited=$((waited + 1))
  done
}

# resume_paused WHAT: sends SIGCONT to $paused_pid and waits for it to end; its exit code is left
# in $paused_code. It may not stop again, nor run on for 60 s.
resume_paused() {
  kill -CONT "$paused_pid"
  local waited=0 state
  while kill -0 "$paused_pid" 2>/dev/null; do
    state=$(sed 's/.*) //' "/proc/$paused_pid/stat" 2>/dev/null | cut -d' ' -f1)
    [[ $state == Z ]] && break
    if [[ $state == T ]] || ((waited >= 1200)); then
      fail "$1: stopped again or still running 60 s after SIGCONT"
      kill -KILL "$paused_pid"
      break
    fi
    sleep 0.05
    waited=$((waited + 1))
  done
  wait "$paused_pid"
  paused_code=$?
}

# truncated_while_read FILE OUT hnf-verify args...: runs the command until it reads FILE's data,
# truncates FILE to half its size (as another process might), lets it go on, and checks exit 3,
# the one line naming FILE and that OUT (and OUT.partial) do not exist.
truncated_while_read() {
  local file=$1 out=$2
  shift 2
  start_paused "$(basename "$file")" "$@" || return
  truncate -s $(($(stat -c %s "$file") / 2)) "$file"
  resume_paused "hnf-verify $1 on $file truncated while read"
  local what="hnf-verify $1 on $file truncated while read" line="hnf-verify: $file: truncated or changed while being read"
  [[ $paused_code == 3 ]] || fail "$what: exit $paused_code, expected 3; stderr: $(cat "$work/err")"
  local lines
  lines=$(wc -l <"$work/err")
  [[ $lines == 1 ]] || fail "$what: $lines stderr lines, expected one: $(cat "$work/err")"
  grep -qxF "$line" "$work/err" || fail "$what: stderr is not '$line': $(cat "$work/err")"
  expect_absent "$out"
}

# interrupt_paused SIGNAL WANT_CODE WANT_WORD NAME OUT hnf-verify args...: as interrupt, with the
# signal delivered while the command is stopped at its first read of NAME (in its long stretch, which
# for check --recompute, report and attention has no cancellation point: the handler itself
# removes the partial outputs and exits).
interrupt_paused() {
  local signal=$1 want=$2 word=$3 name=$4 out=$5
  shift 5
  start_paused "$name" "$@" || return
  sig_caught "$paused_pid" "$signal" || fail "hnf-verify $1: no handler for signal $signal while it works"
  kill "-$signal" "$paused_pid"
  resume_paused "hnf-verify $1 after signal $signal"
  [[ $paused_code == "$want" ]] ||
    fail "hnf-verify $1 interrupted by signal $signal: exit $paused_code, expected $want; stderr: $(cat "$work/err")"
  grep -qx "hnf-verify: interrupted by $word" "$work/err" ||
    fail "hnf-verify $1: stderr is not 'hnf-verify: interrupted by $word': $(cat "$work/err")"
  expect_absent "$out"
}

# --- A write the file size limit stops --------------------------------------------------------
# Under 4 bytes even the 8-byte header length cannot be written; under 64 KiB the header fits
# but sizing the file to its data fails.
t="$work/limited.safetensors"
run_expect 5 "$t: could not write: File too large" --fsize=4 synth-trace --out "$t" --layers 2 --tokens 64
expect_absent "$t"
run_expect 5 "$t: could not size $t.partial: File too large" --fsize=65536 synth-trace --out "$t" --layers 4 --tokens 4096
expect_absent "$t"
# The same command without the limit writes the trace: the limit, not the arguments, failed it.
"$bin" synth-trace --out "$t" --layers 4 --tokens 4096 2>/dev/null || fail "synth-trace without a limit failed"
[[ -s $t ]] || fail "synth-trace without a limit wrote nothing"

# The model trace writer (hnf-verify trace) under the same limit.
run_expect 5 "$work/model.safetensors: could not" --fsize=4096 trace --model "$src/models/hnf-llama-4m" \
  --text "$src/examples/wikitext-2-test-passage.txt" --tokens 64 --out "$work/model.safetensors"
expect_absent "$work/model.safetensors"

# A full file system (ENOSPC) where a small tmpfs can be mounted in a user and mount namespace.
mkdir -p "$work/small-fs"
if unshare -r -m sh -c 'mount -t tmpfs -o size=256k none "$1"' _ "$work/small-fs" 2>/dev/null; then
  unshare -r -m bash -c 'mount -t tmpfs -o size=256k none "$1" && "$2" synth-trace --out "$1/t.safetensors" --layers 4 --tokens 4096 >"$3/out" 2>"$3/err"; code=$?; ls -A "$1" >"$3/left"; exit $code' \
    _ "$work/small-fs" "$bin" "$work"
  code=$?
  [[ $code == 5 ]] || fail "synth-trace on a full tmpfs: exit $code, expected 5: $(cat "$work/err")"
  grep -qF "t.safetensors: could not write: No space left on device" "$work/err" ||
    fail "synth-trace on a full tmpfs: stderr: $(cat "$work/err")"
  [[ ! -s $work/left ]] || fail "synth-trace on a full tmpfs left: $(cat "$work/left")"
else
  echo "note: no tmpfs can be mounted here (user namespaces off); the full-disk case is not run (the RLIMIT_FSIZE cases are)"
fi

# --- SIGINT and SIGTERM during synth-trace ----------------------------------------------------
# About 3 GB if it ran to the end: it must stop at a layer boundary and remove its partial file.
big="$work/interrupted.safetensors"
interrupt 2 130 SIGINT "$big" synth-trace --out "$big" --layers 64 --heads 4 --kv-heads 2 --tokens 65536 --head-dim 64
interrupt 15 143 SIGTERM "$big" synth-trace --out "$big" --layers 64 --heads 4 --kv-heads 2 --tokens 65536 --head-dim 64

# --- SIGINT during trace (the reference model over 4096 tokens: about a second per layer) -------
long_text="$work/long.txt"
for _ in $(seq 6); do cat "$src"/examples/*.txt; done >"$long_text"
interrupt 2 130 SIGINT "$work/model.safetensors" trace --model "$src/models/hnf-llama-4m" --text "$long_text" \
  --tokens 4096 --out "$work/model.safetensors"

# --- certify: write failures and SIGINT ------------------------------------------------------
cert="$work/cert.json"
mkdir -p "$work/smt"
if [[ $have_z3 == 1 ]]; then
  tiny="$src/examples/tiny-trace.safetensors"
  run_expect 5 "could not write: File too large" --fsize=512 certify "$tiny" --eps 0.5 --out "$cert" --smt-dir "$work/smt"
  expect_absent "$cert"
  [[ -z $(ls -A "$work/smt") ]] || fail "certify under a file size limit left SMT-LIB files: $(ls -A "$work/smt" | head -3)"
  "$bin" certify "$tiny" --eps 0.5 --out "$cert" >/dev/null 2>&1 || fail "certify without a limit failed"

  # A trace whose certification takes tens of seconds; interrupted, certify writes nothing.
  slow="$work/slow.safetensors"
  "$bin" synth-trace --out "$slow" --layers 8 --heads 4 --kv-heads 2 --tokens 4096 --query-stride 8 2>/dev/null ||
    fail "synth-trace of the slow trace failed"
  interrupt 2 130 SIGINT "$work/slow-cert.json" certify "$slow" --eps 0.5 --out "$work/slow-cert.json" --smt-dir "$work/smt"
  [[ -z $(ls -A "$work/smt") ]] || fail "interrupted certify left SMT-LIB files"
else
  cp "$src/tests/fixtures/hnf-llama-4m-128.cert.json" "$cert"
fi

# --- A trace truncated by another process while it is read (SIGBUS on its mapping) -----------
# The committed certificate's trace (the reference model over 128 tokens: bit-reproducible), so
# that check --recompute and report --recompute can re-derive its witnesses; every command is
# run on a fresh copy, which it reads through a mapping and the test truncates.
model="$src/models/hnf-llama-4m"
fixture="$src/tests/fixtures/hnf-llama-4m-128.cert.json"
m128="$work/m128.safetensors"
copy="$work/m128-copy.safetensors"
"$bin" trace --model "$model" --text "$src/examples/wikitext-2-test-passage.txt" --tokens 128 --out "$m128" \
  >/dev/null 2>&1 || fail "trace of the fixture's 128 tokens failed"
"$bin" keygen --out "$work/operator" >/dev/null 2>&1 || fail "keygen failed"
recheck=(--model "$model" --trace "$copy" --recompute)
cp "$m128" "$copy"
truncated_while_read "$copy" "$work/analysis.json" analyze "$copy" --eps 0.3 --out "$work/analysis.json"
cp "$m128" "$copy"
truncated_while_read "$copy" "$work/none" attention "$copy"
if [[ $have_z3 == 1 ]]; then
  cp "$m128" "$copy"
  truncated_while_read "$copy" "$work/copy-cert.json" certify "$copy" --eps 0.3 --out "$work/copy-cert.json" \
    --smt-dir "$work/smt"
  [[ -z $(ls -A "$work/smt") ]] || fail "certify of a truncated trace left SMT-LIB files"
fi
cp "$m128" "$copy"
truncated_while_read "$copy" "$work/attestation.json" check "$fixture" "${recheck[@]}" \
  --sign "$work/operator.key" --attestation-out "$work/attestation.json"
cp "$m128" "$copy"
truncated_while_read "$copy" "$work/recomputed.md" report "$fixture" "${recheck[@]}" \
  --md "$work/recomputed.md" --html "$work/recomputed.html"
expect_absent "$work/recomputed.html"

# --- SIGINT and SIGTERM during check --recompute, report and attention -----------------------
cp "$m128" "$copy"
interrupt_paused 2 130 SIGINT m128-copy.safetensors "$work/attestation.json" check "$fixture" "${recheck[@]}" \
  --sign "$work/operator.key" --attestation-out "$work/attestation.json"
interrupt_paused 2 130 SIGINT m128-copy.safetensors "$work/recomputed.md" report "$fixture" "${recheck[@]}" \
  --md "$work/recomputed.md" --html "$work/recomputed.html"
expect_absent "$work/recomputed.html"
interrupt_paused 15 143 SIGTERM m128-copy.safetensors "$work/recomputed.md" report "$fixture" "${recheck[@]}" \
  --md "$work/recomputed.md"
interrupt_paused 15 143 SIGTERM m128-copy.safetensors "$work/none" attention "$copy"
# Not interrupted, the same commands run to the end: the signals, not the inputs, stopped them.
"$bin" check "$fixture" "${recheck[@]}" --sign "$work/operator.key" --attestation-out "$work/attestation.json" \
  >/dev/null 2>"$work/err" || fail "check --recompute --sign failed: $(cat "$work/err")"
[[ -s $work/attestation.json ]] || fail "check --recompute --sign wrote no attestation"
"$bin" report "$fixture" "${recheck[@]}" --md "$work/recomputed.md" >/dev/null 2>"$work/err" ||
  fail "report --recompute failed: $(cat "$work/err")"
[[ -s $work/recomputed.md ]] || fail "report --recompute wrote no report"

# --- report: a write failure leaves the previous report as it was -----------------------------
printf 'previous report\n' >"$work/r.md"
run_expect 5 "could not write: File too large" --fsize=64 report "$cert" --unattested --md "$work/r.md" --html "$work/r.html"
[[ $(cat "$work/r.md") == "previous report" ]] || fail "report under a file size limit changed the previous r.md"
expect_absent "$work/r.html"
[[ ! -e $work/r.md.partial ]] || fail "r.md.partial was left behind"

# --- A certificate truncated, or growing while read ------------------------------------------
size=$(stat -c %s "$cert")
head -c $((size / 2)) "$cert" >"$work/truncated.json"
run_expect 3 "$work/truncated.json" check "$work/truncated.json"
run_expect 3 "$work/truncated.json" report "$work/truncated.json" --unattested --md "$work/t.md"
expect_absent "$work/t.md"
: >"$work/empty.json"
run_expect 3 "$work/empty.json" check "$work/empty.json"
# /proc files say 0 bytes and then deliver more: the reader must refuse, not parse a snapshot
# that is not one.
run_expect 3 "/proc/self/status: grew while being read" check /proc/self/status

no_partials "$work"
if ((failures > 0)); then
  echo "$failures fault check(s) failed" >&2
  exit 1
fi
echo "all fault checks passed"
rm -rf "$work"
