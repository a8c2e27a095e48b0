#!/bin/sh
# run.sh - run every test of moat; called by `make check` from the repo
# root (after `make build-check`).
#
#   unit tests      build/san/tests/test_*          (ASan+UBSan)
#   fuzzers         build/fuzz/fuzz_*                short libFuzzer runs
#   integration     tests/integration/test_*.py      (/usr/bin/python3)
#
# Every program prints one line per case, "ok NAME" or "not ok NAME: why".
# A program that exits non-zero without any "not ok" line counts as one
# failed case named after the program; a fuzzer run is one case. The
# output of programs with failures is shown. The last line is exactly
# "N passed, M failed"; the exit status is non-zero if M > 0.
#
# Environment:
#   FUZZ_TIME=20        seconds per fuzzer
#   UNIT_TIMEOUT=120    seconds per unit test program
#   INTEG_TIMEOUT=420   seconds per integration test file
#   INTEG_JOBS=3        integration test files run at once
#   MOAT_TESTS="a b"    run only the programs whose name contains a word
#   MOATD, MOATD_HOOKTEST   binaries for the integration tests
set -u

cd "$(dirname "$0")/.." || exit 2
ROOT=$(pwd)

export ASAN_OPTIONS=detect_leaks=1:abort_on_error=0
export UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1
export PYTHONDONTWRITEBYTECODE=1

FUZZ_TIME=${FUZZ_TIME:-20}
UNIT_TIMEOUT=${UNIT_TIMEOUT:-120}
INTEG_TIMEOUT=${INTEG_TIMEOUT:-420}
INTEG_JOBS=${INTEG_JOBS:-3}
PY=/usr/bin/python3

WORK=$(mktemp -d /tmp/moat-check.XXXXXX) || exit 2
trap 'rm -rf "$WORK"' EXIT INT TERM

PASSED=0
FAILED=0
SEQ=0

selected() {
	[ -z "${MOAT_TESTS:-}" ] && return 0
	for w in $MOAT_TESTS; do
		case "$1" in *"$w"*) return 0 ;; esac
	done
	return 1
}

# tally NAME OUTFILE STATUS: count ok / not ok lines of one program.
tally() {
	name=$1 out=$2 st=$3
	ok=$(grep -c '^ok ' "$out" 2>/dev/null)
	nok=$(grep -c '^not ok ' "$out" 2>/dev/null)
	ok=${ok:-0} nok=${nok:-0}
	extra=0
	if [ "$st" != 0 ] && [ "$nok" = 0 ]; then
		extra=1
		if [ "$st" = 124 ] || [ "$st" = 137 ]; then
			echo "not ok $name: timed out" >>"$out"
		else
			echo "not ok $name: exited with status $st" >>"$out"
		fi
	fi
	PASSED=$((PASSED + ok))
	FAILED=$((FAILED + nok + extra))
	printf '%-40s %4d passed, %d failed\n' "$name" "$ok" "$((nok + extra))"
	if [ $((nok + extra)) -gt 0 ]; then
		echo "---- output of $name (last 300 lines) ----"
		tail -n 300 "$out"
		echo "---- end of $name ----"
	fi
}

# -- unit tests
for t in build/san/tests/test_*; do
	[ -x "$t" ] || continue
	n=$(basename "$t")
	selected "$n" || continue
	out="$WORK/$n.out"
	timeout -k 5 "$UNIT_TIMEOUT" "$t" >"$out" 2>&1 </dev/null
	tally "unit/$n" "$out" $?
done

# -- fuzzers: one case each; new inputs go to a scratch corpus, the seed
# corpus in the repository is only read.
for f in build/fuzz/fuzz_*; do
	[ -x "$f" ] || continue
	n=$(basename "$f")
	selected "$n" || continue
	out="$WORK/$n.out"
	mkdir -p "$WORK/corpus-$n" "$WORK/art-$n"
	seeds=""
	[ -d "tests/fuzz/corpus/$n" ] && seeds="tests/fuzz/corpus/$n"
	timeout -k 5 $((FUZZ_TIME + 60)) "$f" -max_total_time="$FUZZ_TIME" -timeout=10 \
		-rss_limit_mb=2048 -print_final_stats=0 \
		-artifact_prefix="$WORK/art-$n/" "$WORK/corpus-$n" $seeds >"$out.log" 2>&1 </dev/null
	st=$?
	if [ $st = 0 ]; then
		echo "ok $n" >"$out"
	else
		{
			echo "not ok $n: fuzzer failed (status $st)"
			grep -E 'ERROR:|SUMMARY:|runtime error|Test unit written|deadly signal|timeout' "$out.log" | head -20 | sed 's/^/# /'
			for a in "$WORK/art-$n"/*; do
				[ -f "$a" ] || continue
				echo "# crashing input ($(basename "$a")), base64:"
				head -c 4096 "$a" | base64 | sed 's/^/#   /'
			done
			echo "# fuzzer log (last 60 lines):"
			tail -n 60 "$out.log" | sed 's/^/#   /'
		} >"$out"
	fi
	tally "fuzz/$n" "$out" "$st"
done

# -- integration tests, INTEG_JOBS files at a time
set --
for t in tests/integration/test_*.py; do
	[ -f "$t" ] || continue
	n=$(basename "$t" .py)
	selected "$n" || continue
	set -- "$@" "$t"
done
if [ $# -gt 0 ]; then
	printf '%s\n' "$@" | xargs -P "$INTEG_JOBS" -I{} sh -c '
		n=$(basename "$1" .py)
		timeout -k 10 "$2" "$3" "$1" >"$4/$n.out" 2>&1 </dev/null
		echo $? >"$4/$n.status"' sh {} "$INTEG_TIMEOUT" "$PY" "$WORK"
fi
for t in "$@"; do
	n=$(basename "$t" .py)
	st=$(cat "$WORK/$n.status" 2>/dev/null || echo 99)
	tally "integration/$n" "$WORK/$n.out" "$st"
done

echo "$PASSED passed, $FAILED failed"
[ "$FAILED" = 0 ]
