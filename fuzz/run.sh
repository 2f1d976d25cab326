#!/usr/bin/env bash
# Run every fuzz target for FUZZ_SECONDS each (default 60) and print one line per target:
# its name, the executions, the corpus size and whether it crashed. Exit 1 if any crashed.
#
#   fuzz/run.sh                          # every target, 60 s each
#   FUZZ_SECONDS=600 fuzz/run.sh         # longer
#   FUZZ_TARGETS="marketo adobe" fuzz/run.sh
#
# Builds with cargo-fuzz on the stable toolchain: RUSTC_BOOTSTRAP=1 lets stable rustc take the
# -Z flags (sanitizer, coverage instrumentation) that cargo-fuzz passes. Debug assertions and
# overflow checks are on, AddressSanitizer too. New corpus entries go to fuzz/corpus/<target>
# (git-ignored); the committed seeds in fuzz/seeds/<target> are read, never written. Crash
# inputs land in fuzz/artifacts/<target>/, the full libFuzzer log in fuzz/logs/<target>.log.
set -uo pipefail

cd "$(dirname "$0")"
export RUSTC_BOOTSTRAP=1
seconds="${FUZZ_SECONDS:-60}"
targets="${FUZZ_TARGETS:-$(cargo fuzz list)}"
flags=(-rss_limit_mb=512 -timeout=5 -max_len=65536 -print_final_stats=1)

if ! command -v cargo-fuzz >/dev/null; then
    echo "cargo-fuzz is not installed: cargo install cargo-fuzz" >&2
    exit 2
fi

echo "building the fuzz targets..." >&2
if ! cargo fuzz build >logs.build 2>&1; then
    cat logs.build >&2
    exit 2
fi
mkdir -p logs

crashed=0
summary=()
for t in $targets; do
    mkdir -p "corpus/$t" "artifacts/$t"
    echo "fuzzing $t for ${seconds}s..." >&2
    log="logs/$t.log"
    cargo fuzz run "$t" "corpus/$t" "seeds/$t" -- -max_total_time="$seconds" "${flags[@]}" >"$log" 2>&1
    rc=$?
    runs=$(grep -oE 'stat::number_of_executed_units: [0-9]+' "$log" | tail -1 | grep -oE '[0-9]+$')
    [ -n "$runs" ] || runs=$(grep -oE 'Done [0-9]+ runs' "$log" | tail -1 | grep -oE '[0-9]+')
    [ -n "$runs" ] || runs=$(grep -oE '^#[0-9]+' "$log" | tail -1 | tr -d '#')
    cov=$(grep -oE 'cov: [0-9]+' "$log" | tail -1 | grep -oE '[0-9]+')
    corpus=$(find "corpus/$t" -type f | wc -l)
    if [ "$rc" -eq 0 ] && grep -q 'Done [0-9]* runs' "$log"; then
        result="ok"
    else
        crashed=1
        artifact=$(grep -oE 'Test unit written to [^ ]+' "$log" | head -1 | sed -e 's/^Test unit written to //' -e "s|^$PWD/||")
        why=$(grep -m1 -E -A1 'panicked at|ERROR: libFuzzer|ERROR: AddressSanitizer' "$log" | tr '\n' ' ' | sed 's/^thread [^ ]* ([0-9]*) //' | cut -c1-200)
        result="CRASH (exit $rc) ${artifact:-no artifact}: ${why:-see $log}"
    fi
    line=$(printf '%-16s %12s execs  %5s cov  %5s corpus  %s' "$t" "${runs:-?}" "${cov:-?}" "$corpus" "$result")
    summary+=("$line")
    echo "$line"
done

echo
echo "target                  executions (in ${seconds}s each)"
printf '%s\n' "${summary[@]}"
exit "$crashed"
