#!/usr/bin/env bash
# Where segrelay's dry-run time goes: `bash benches/profile.sh`.
#
# Builds a release binary with line tables (CARGO_PROFILE_RELEASE_DEBUG, no change
# to Cargo.toml) in its own target directory, generates a corpus with
# examples/gen_corpus.rs, and for each destination prints:
#   - callgrind (instructions, exact, single-threaded): total instructions per
#     event next to the serde_json Value round trip (examples/baseline.rs), and the
#     top functions by inclusive and by self cost;
#   - perf (CPU-clock samples, when perf works here): the top functions by
#     inclusive ("children") and self time, which also shows what cache misses
#     and the allocator cost, unlike instruction counts.
#
# Settings (environment):
#   SEGRELAY_PROFILE_MB       corpus for callgrind, MB; default 3
#   SEGRELAY_PROFILE_PERF_MB  corpus for perf, MB; default 30
#   SEGRELAY_PROFILE_DESTS    destinations; default "orb amberflo kable"
#   SEGRELAY_PROFILE_TOP      rows per list; default 25
#   SEGRELAY_PROFILE_DIR      work directory; default a temp dir, kept (the profiles are in it)
#   SEGRELAY_PROFILE_TARGET_DIR  cargo target directory; default $CARGO_TARGET_DIR/profiling
#   SEGRELAY_BENCH_NO_BUILD=1 use the binaries already built there
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$ROOT"
MB=${SEGRELAY_PROFILE_MB:-3}
PERF_MB=${SEGRELAY_PROFILE_PERF_MB:-30}
DESTS=${SEGRELAY_PROFILE_DESTS:-"orb amberflo kable"}
TOP=${SEGRELAY_PROFILE_TOP:-25}
TARGET_DIR=${SEGRELAY_PROFILE_TARGET_DIR:-${CARGO_TARGET_DIR:-$ROOT/target}/profiling}
BIN=$TARGET_DIR/release
W=${SEGRELAY_PROFILE_DIR:-$(mktemp -d "${TMPDIR:-/tmp}/segrelay-profile.XXXXXX")}
mkdir -p "$W"
log() { printf '%s\n' "profile: $*" >&2; }

command -v valgrind >/dev/null 2>&1 || { log "valgrind is needed (apt-get install -y valgrind)"; exit 1; }
if [[ ${SEGRELAY_BENCH_NO_BUILD:-0} != 1 ]]; then
    log "building with line tables in $TARGET_DIR"
    CARGO_TARGET_DIR=$TARGET_DIR CARGO_PROFILE_RELEASE_DEBUG=line-tables-only \
        cargo build --release --quiet --bins --examples
fi
grep -v '^[[:space:]]*max_events_per_minute' samples/segrelay.toml >"$W/settings.toml"
"$BIN/examples/gen_corpus" --mb "$MB" --out "$W/small.ndjson" 2>/dev/null
EVENTS=$(wc -l <"$W/small.ndjson")

# Top functions of a callgrind file, one line per function (inline sites merged
# into the largest), runtime wrappers left out.
callgrind_top() { # FILE inclusive(yes|no) N
    callgrind_annotate --inclusive="$2" --threshold=100 "$1" 2>/dev/null |
        awk '/^ *[0-9,]+ \( *[0-9.]+%\) / {
            pct = $0; sub(/^ *[0-9,]+ \( */, "", pct); sub(/%\).*/, "", pct)
            rest = $0; sub(/^ *[0-9,]+ \( *[0-9.]+%\) +/, "", rest)
            fn = substr(rest, index(rest, ":") + 1); sub(/ \[[^]]*\] *$/, "", fn)
            if (fn ~ /lang_start|rust_begin_short_backtrace|libc_start|below main|^main$|^segrelay::main$|^segrelay::run$|^segrelay::run::Job::run$|^0x0/) next
            if (pct + 0 >= 99.99 || seen[fn]++) next
            printf "%6.2f%%  %s\n", pct, substr(fn, 1, 150)
        }' | head -n "$3" || true
}

for dest in baseline $DESTS; do
    out=$W/callgrind.$dest.out
    if [[ $dest == baseline ]]; then
        cmd=("$BIN/examples/baseline" "$W/small.ndjson" "$W/out.baseline")
    else
        cmd=("$BIN/segrelay" send --dry-run -q --format ndjson -c "$W/settings.toml" -d "$dest"
            -o "$W/out.$dest" "$W/small.ndjson")
    fi
    log "callgrind: $dest"
    valgrind --tool=callgrind --callgrind-out-file="$out" "${cmd[@]}" >/dev/null 2>"$W/valgrind.$dest.log" || true
    total=$(sed -n 's/^totals: *//p; s/^summary: *//p' "$out" | head -n 1)
    echo
    echo "### $dest: callgrind, $EVENTS events ($MB MB): $total instructions, $((total / EVENTS)) per event"
    if [[ $dest != baseline ]]; then
        echo
        echo "inclusive:"
        callgrind_top "$out" yes "$TOP"
        echo
        echo "self:"
        callgrind_top "$out" no "$TOP"
    fi
done

if perf stat -e task-clock true >/dev/null 2>&1; then
    "$BIN/examples/gen_corpus" --mb "$PERF_MB" --out "$W/perf.ndjson" 2>/dev/null
    for dest in baseline $DESTS; do
        log "perf: $dest"
        if [[ $dest == baseline ]]; then
            cmd=("$BIN/examples/baseline" "$W/perf.ndjson" "$W/perf-out.baseline")
        else
            cmd=("$BIN/segrelay" send --dry-run -q --format ndjson -c "$W/settings.toml" -d "$dest"
                -o "$W/perf-out.$dest" "$W/perf.ndjson")
        fi
        perf record -q -F 2999 -g --call-graph dwarf,16384 -o "$W/perf.$dest.data" \
            "${cmd[@]}" >/dev/null 2>&1 || true
        rm -f "$W/perf-out.$dest"
        echo
        echo "### $dest: perf, CPU time, $PERF_MB MB"
        echo
        echo "inclusive (children), inlined frames left out:"
        perf report -i "$W/perf.$dest.data" --children --stdio --sort symbol -g none 2>/dev/null |
            awk '/^ +[0-9.]+% +[0-9.]+% / && !/\(inlined\)/ {
                fn = $0; sub(/^ +[0-9.]+% +[0-9.]+% +\[[.k]\] +/, "", fn); sub(/[ -]+$/, "", fn)
                if (fn ~ /^_start|lang_start|libc_start|^main$|segrelay::main$|segrelay::run$|segrelay::run::Job::run$|call_once|catch_unwind|backtrace/) next
                printf "%7s  %s\n", $1, substr(fn, 1, 150) }' | head -n "$TOP" || true
        echo
        echo "self:"
        perf report -i "$W/perf.$dest.data" --no-children --stdio --sort symbol -g none 2>/dev/null |
            awk '/^ +[0-9.]+% +\[/ { fn = $0; sub(/^ +[0-9.]+% +\[[.k]\] +/, "", fn); sub(/[ -]+$/, "", fn)
                printf "%7s  %s\n", $1, substr(fn, 1, 150) }' | head -n "$TOP" || true
    done
else
    log "perf does not work here: callgrind only"
fi
log "profiles kept in $W (callgrind_annotate / kcachegrind callgrind.*.out; perf report -i perf.*.data)"
