#!/usr/bin/env bash
# segrelay's benchmark: one command, `bash benches/run.sh`, prints Markdown tables.
#
# What it measures (every ratio side by side, in the same run, on the same files):
#   - dry-run throughput (--format ndjson -o FILE) for amberflo, orb and kable,
#     against a serde_json Value round trip of the same file (examples/baseline.rs)
#     on the default threads                        target: >= 2.0x the baseline
#   - the same dry runs' CPU time (user + system) with -j 1, against the
#     baseline's                                    target: <= 0.8x
#   - each dry run's peak RSS on the large corpus and on one twice its size
#     (flat with the input's size)                  target: < 48 MiB
#   - where a dry run's memory goes: runs with and without each part (the
#     "memory" table)
#   - segrelay (orb dry run) against a jq filter doing Orb's translation
#     (benches/orb.jq, `jq -c`)                     target: >= 30x jq
#   - gzip input against the same corpus plain      target: <= 1.5x the time
#   - peak RSS of a large dry run and a large send  target: < 64 MiB for 1 GB
#   - sending to a loopback server that answers after a fixed latency
#     (examples/latency_server.rs), events/s against batch x concurrency / latency
#                                                   target: >= 70%
#   - an archive read from S3: an orb dry run of the gzip corpus split into
#     Segment's layout, served by a loopback S3 server (examples/s3_server.rs),
#     against the same folder on local disk             target: <= 1.5x the time
#   - start-up: `segrelay --help` and a one-line dry run (hyperfine, else a loop)
#   - a checkpoint's cost: an orb send of one month (--since/--until) out of a
#     year of events, with --checkpoint against the same send without
#                                                   target: <= 1.1x the time
#
# Settings (environment):
#   SEGRELAY_BENCH_MB             size of the large corpus (RSS rows, send inputs), MB (10^6 bytes); default 200.
#                                 The 1 GB check is opt-in: SEGRELAY_BENCH_MB=1000 (takes a few minutes).
#   SEGRELAY_BENCH_THROUGHPUT_MB  corpus for the throughput and gzip rows; default 50
#   SEGRELAY_BENCH_JQ_MB          corpus for the jq row (jq is slow: about 3 s a run); default 20
#   SEGRELAY_BENCH_RUNS           runs of each timed case, the best is kept; default 3
#   SEGRELAY_BENCH_LATENCY_MS     the server's latency for the send rows; default 20
#   SEGRELAY_BENCH_CONCURRENCY    concurrency levels of the send rows; default "1 4"
#   SEGRELAY_BENCH_ROUNDS         full batches each sending thread sends in a send row; default 40
#   SEGRELAY_BENCH_LARGE_LATENCY_MS  the server's latency for the large send (RSS row); default 1
#   SEGRELAY_BENCH_YEAR_MB        corpus of a year of events for the checkpoint row, MB; default 200
#   SEGRELAY_BENCH_SEED           corpus seed; default 42
#   SEGRELAY_BENCH_DIR            work directory (corpus, outputs); default a new temp dir, removed at the end
#   SEGRELAY_BENCH_KEEP=1         keep the work directory
#   SEGRELAY_BENCH_NO_BUILD=1     use the binaries already built
#   SEGRELAY_BENCH_OUT           also write the Markdown report to this file
#   SEGRELAY_BENCH_SKIP           space-separated sections to skip: throughput jq gzip s3 send large memory checkpoint startup
#                                 (memory: the 2x corpus, the targets table and the breakdown)
#   CARGO_TARGET_DIR              where cargo builds (binaries in $CARGO_TARGET_DIR/release)
#
# Peak RSS comes from /usr/bin/time -v's "Maximum resident set size" (GNU time,
# Debian package `time`, installed here when missing and possible); without it,
# from polling VmHWM in /proc/PID/status every 20 ms (the table says which).
# Exit codes 0 and 1 (some events rejected) of segrelay are both accepted.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$ROOT"

MB=${SEGRELAY_BENCH_MB:-200}
TMB=${SEGRELAY_BENCH_THROUGHPUT_MB:-50}
JQMB=${SEGRELAY_BENCH_JQ_MB:-20}
RUNS=${SEGRELAY_BENCH_RUNS:-3}
LATENCY_MS=${SEGRELAY_BENCH_LATENCY_MS:-20}
CONCURRENCY=${SEGRELAY_BENCH_CONCURRENCY:-"1 4"}
ROUNDS=${SEGRELAY_BENCH_ROUNDS:-40}
LARGE_LATENCY_MS=${SEGRELAY_BENCH_LARGE_LATENCY_MS:-1}
YMB=${SEGRELAY_BENCH_YEAR_MB:-200}
SEED=${SEGRELAY_BENCH_SEED:-42}
SKIP=" ${SEGRELAY_BENCH_SKIP:-} "
TARGET_DIR=${CARGO_TARGET_DIR:-$ROOT/target}
BIN=$TARGET_DIR/release
SEGRELAY=$BIN/segrelay

log() { printf '%s\n' "bench: $*" >&2; }
die() { log "$*"; exit 1; }
skipped() { [[ $SKIP == *" $1 "* ]]; }

# ---------------------------------------------------------------- tools
try_install() { # try_install COMMAND PACKAGE
    command -v "$1" >/dev/null 2>&1 && return 0
    if [[ $(id -u) == 0 ]] && command -v apt-get >/dev/null 2>&1; then
        log "installing $2 (apt-get)"
        DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$2" >/dev/null 2>&1 ||
            { apt-get update -qq >/dev/null 2>&1 && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$2" >/dev/null 2>&1; } || true
    fi
    command -v "$1" >/dev/null 2>&1
}
if [[ -x /usr/bin/time ]] || { try_install time time && [[ -x /usr/bin/time ]]; }; then
    RSS_HOW="/usr/bin/time -v, Maximum resident set size"
    HAVE_GNU_TIME=1
else
    RSS_HOW="VmHWM polled in /proc/PID/status every 20 ms"
    HAVE_GNU_TIME=0
fi
HAVE_HYPERFINE=0
try_install hyperfine hyperfine && HAVE_HYPERFINE=1
HAVE_JQ=0
command -v jq >/dev/null 2>&1 && HAVE_JQ=1
command -v gzip >/dev/null 2>&1 || die "gzip is needed"

# ---------------------------------------------------------------- work dir, cleanup
if [[ -n ${SEGRELAY_BENCH_DIR:-} ]]; then
    W=$SEGRELAY_BENCH_DIR
    mkdir -p "$W"
    OWN_DIR=0
else
    W=$(mktemp -d "${TMPDIR:-/tmp}/segrelay-bench.XXXXXX")
    OWN_DIR=1
fi
case "$W" in "$ROOT"|"$ROOT"/*) [[ $W == "$TARGET_DIR"* ]] || die "the work directory must not be in the repository: $W" ;; esac
SERVER_PID=""
cleanup() {
    if [[ -n $SERVER_PID ]]; then
        kill "$SERVER_PID" 2>/dev/null || true
        wait "$SERVER_PID" 2>/dev/null || true
    fi
    if [[ $OWN_DIR == 1 && ${SEGRELAY_BENCH_KEEP:-0} != 1 ]]; then
        rm -rf "$W"
    else
        log "work directory kept: $W"
    fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM
mkdir -p "$W/out" "$W/samples"

# ---------------------------------------------------------------- build
if [[ ${SEGRELAY_BENCH_NO_BUILD:-0} != 1 ]]; then
    log "building (release, CARGO_TARGET_DIR=$TARGET_DIR)"
    CARGO_TARGET_DIR=$TARGET_DIR cargo build --release --quiet --bins --examples ||
        die "build failed"
fi
for b in "$SEGRELAY" "$BIN/examples/gen_corpus" "$BIN/examples/baseline" "$BIN/examples/latency_server" "$BIN/examples/s3_server"; do
    [[ -x $b ]] || die "missing $b (build first, or unset SEGRELAY_BENCH_NO_BUILD)"
done

# ---------------------------------------------------------------- measuring
# measure NAME [--stdout FILE] CMD...: runs CMD once (stdout to FILE, else
# /dev/null; stderr to the log), appends "seconds rss_kib exit_code cpu_seconds"
# to $W/samples/NAME (CPU: user + system, 0 without GNU time).
measure() {
    local name=$1 stdout=/dev/null
    shift
    if [[ $1 == --stdout ]]; then
        stdout=$2
        shift 2
    fi
    local t0 t1 rc=0 rss=0 cpu=0
    t0=$(date +%s%N)
    if [[ $HAVE_GNU_TIME == 1 ]]; then
        /usr/bin/time -o "$W/time.out" -f "%M %U %S" "$@" >"$stdout" 2>>"$W/stderr.log" || rc=$?
        t1=$(date +%s%N)
        read -r rss cpu_user cpu_sys < <(tail -n 1 "$W/time.out")
        cpu=$(awk -v u="$cpu_user" -v s="$cpu_sys" 'BEGIN { printf "%.2f", u + s }')
    else
        "$@" >"$stdout" 2>>"$W/stderr.log" &
        local pid=$! v
        while kill -0 "$pid" 2>/dev/null; do
            v=$(awk '/^VmHWM:/ {print $2}' "/proc/$pid/status" 2>/dev/null || true)
            [[ -n $v && $v -gt $rss ]] && rss=$v
            sleep 0.02
        done
        wait "$pid" || rc=$?
        t1=$(date +%s%N)
    fi
    if ((rc > 1)); then
        log "$name: exit code $rc from: $*"
        tail -n 20 "$W/stderr.log" >&2
        exit 1
    fi
    echo "$(awk -v a="$t0" -v b="$t1" 'BEGIN { printf "%.6f", (b - a) / 1e9 }') $rss $rc $cpu" >>"$W/samples/$name"
}
best_time() { awk 'NR == 1 || $1 < m { m = $1 } END { printf "%.6f", m }' "$W/samples/$1"; }
best_cpu() { awk 'NR == 1 || $4 < m { m = $4 } END { printf "%.2f", m }' "$W/samples/$1"; }
max_rss() { awk '$2 > m { m = $2 } END { printf "%d", m }' "$W/samples/$1"; }
mib() { awk -v k="$1" 'BEGIN { if (k > 0) printf "%.1f MiB", k / 1024; else printf "n/a" }'; }
fmt_rate() { # 1234567.8 -> 1,234,568
    awk -v x="$1" 'BEGIN { s = sprintf("%.0f", x); out = ""
        while (length(s) > 3) { out = "," substr(s, length(s) - 2) out; s = substr(s, 1, length(s) - 3) }
        print s out }'
}

ROWS=()
NOTES=()
declare -A RATIO=() CPU_RATIO=()
TARGETS=()
MEMORY=()
# row CASE EVENTS_PER_S MB_PER_S RATIO TARGET VERDICT RSS
row() { ROWS+=("| $1 | $2 | $3 | $4 | $5 | $6 | $7 |"); }
verdict() { # verdict VALUE OP LIMIT -> pass/FAIL
    awk -v v="$1" -v l="$3" -v op="$2" 'BEGIN {
        ok = (op == ">=") ? (v >= l) : (op == "<=") ? (v <= l) : (v < l);
        print ok ? "pass" : "**FAIL**" }'
}
throughput_row() { # throughput_row CASE SAMPLES EVENTS BYTES RATIO TARGET VERDICT
    local t
    t=$(best_time "$2")
    row "$1" "$(fmt_rate "$(awk -v n="$3" -v t="$t" 'BEGIN { print n / t }')")" \
        "$(awk -v b="$4" -v t="$t" 'BEGIN { printf "%.1f", b / 1e6 / t }')" \
        "$5" "$6" "$7" "$(mib "$(max_rss "$2")")"
}

# The settings: the shipped sample, without Orb's max_events_per_minute (the
# send rows would otherwise measure the rate limit instead of segrelay).
grep -v '^[[:space:]]*max_events_per_minute' samples/segrelay.toml >"$W/settings.toml"
SETTINGS=$W/settings.toml
dry_run() { # dry_run DEST INPUT OUTPUT [more args]: the command, in CMD
    CMD=("$SEGRELAY" send --dry-run -q --format ndjson -c "$SETTINGS" -d "$1" -o "$3" "${@:4}" "$2")
}

# ---------------------------------------------------------------- corpora
gen() { "$BIN/examples/gen_corpus" --mb "$1" --seed "$SEED" --out "$2" "${@:3}" 2>>"$W/gen.log"; }
log "generating corpora (seed $SEED): ${TMB} MB, ${JQMB} MB, ${MB} MB"
gen "$TMB" "$W/corpus.ndjson"
gen "$JQMB" "$W/corpus-jq.ndjson"
gen "$MB" "$W/corpus-large.ndjson"
if ! skipped memory; then
    gen "$((2 * MB))" "$W/corpus-double.ndjson"
fi
if ! skipped checkpoint; then
    # A year of events (from 2024-05-01), for a month's filter.
    gen "$YMB" "$W/corpus-year.ndjson" --days 365
fi
T_EVENTS=$(wc -l <"$W/corpus.ndjson")
T_BYTES=$(stat -c %s "$W/corpus.ndjson")
J_EVENTS=$(wc -l <"$W/corpus-jq.ndjson")
J_BYTES=$(stat -c %s "$W/corpus-jq.ndjson")
L_EVENTS=$(wc -l <"$W/corpus-large.ndjson")
L_BYTES=$(stat -c %s "$W/corpus-large.ndjson")
TRACK_SHARE=$(awk -v t="$(grep -c '^{"type":"track"' "$W/corpus.ndjson")" -v n="$T_EVENTS" 'BEGIN { print t / n }')
if ! skipped gzip; then
    gzip -c "$W/corpus.ndjson" >"$W/corpus.ndjson.gz"
fi
log "corpus: $T_EVENTS events, $T_BYTES bytes ($((T_BYTES / T_EVENTS)) bytes an event), track share $TRACK_SHARE"

# ---------------------------------------------------------------- throughput, gzip
if ! skipped throughput; then
    log "throughput: ${RUNS} runs of baseline, amberflo, orb, kable (default threads and -j 1)$(skipped gzip || echo ', orb gzip'), interleaved"
    for ((run = 1; run <= RUNS; run++)); do
        measure baseline "$BIN/examples/baseline" "$W/corpus.ndjson" "$W/out/baseline.ndjson"
        for dest in amberflo orb kable; do
            dry_run "$dest" "$W/corpus.ndjson" "$W/out/$dest.ndjson"
            measure "dry-$dest" "${CMD[@]}"
            dry_run "$dest" "$W/corpus.ndjson" "$W/out/$dest-j1.ndjson" -j 1
            measure "dry-$dest-j1" "${CMD[@]}"
        done
        if ! skipped gzip; then
            dry_run orb "$W/corpus.ndjson.gz" "$W/out/orb-gz.ndjson"
            measure dry-orb-gz "${CMD[@]}"
        fi
    done
    base=$(best_time baseline)
    base_cpu=$(best_cpu baseline)
    throughput_row "baseline: serde_json Value round trip (CPU ${base_cpu} s)" baseline "$T_EVENTS" "$T_BYTES" "1.00" "" ""
    for dest in amberflo orb kable; do
        t=$(best_time "dry-$dest")
        ratio=$(awk -v b="$base" -v t="$t" 'BEGIN { printf "%.2f", b / t }')
        RATIO[$dest]=$ratio
        CPU_RATIO[$dest]=$(awk -v b="$base_cpu" -v c="$(best_cpu "dry-$dest-j1")" 'BEGIN { if (b > 0) printf "%.2f", c / b; else print "n/a" }')
        throughput_row "$dest dry run" "dry-$dest" "$T_EVENTS" "$T_BYTES" "${ratio}x" ">= 2.00x" "$(verdict "$ratio" ">=" 2.0)"
        throughput_row "$dest dry run, -j 1 (CPU $(best_cpu "dry-$dest-j1") s)" "dry-$dest-j1" "$T_EVENTS" "$T_BYTES" \
            "CPU ${CPU_RATIO[$dest]}x" "<= 0.80x" "$(verdict "${CPU_RATIO[$dest]}" "<=" 0.8)"
    done
    if ! skipped gzip; then
        t=$(best_time dry-orb-gz)
        slow=$(awk -v p="$(best_time dry-orb)" -v t="$t" 'BEGIN { printf "%.2f", t / p }')
        throughput_row "orb dry run, gzip input (MB/s of uncompressed input)" dry-orb-gz "$T_EVENTS" "$T_BYTES" \
            "time ${slow}x plain" "<= 1.50x" "$(verdict "$slow" "<=" 1.5)"
    fi
fi

# ---------------------------------------------------------------- S3
if ! skipped s3; then
    # The throughput corpus in Segment's layout: 8 gzip objects over 4 day prefixes.
    ARCHIVE=$W/s3/bench/segment-logs/src1
    split -n l/8 -d "$W/corpus.ndjson" "$W/s3-part-"
    part=0
    for piece in "$W"/s3-part-*; do
        day=$((1772409600000 + (part / 2) * 86400000))
        mkdir -p "$ARCHIVE/$day"
        gzip -c "$piece" >"$ARCHIVE/$day/part-$part.gz"
        rm "$piece"
        part=$((part + 1))
    done
    "$BIN/examples/s3_server" "$W/s3" >"$W/s3.addr" 2>>"$W/stderr.log" &
    S3_PID=$!
    SERVER_PID=$S3_PID # stopped by cleanup if the bench stops here
    for _ in $(seq 50); do [[ -s $W/s3.addr ]] && break; sleep 0.1; done
    S3_URL=$(head -n 1 "$W/s3.addr")
    [[ -n $S3_URL ]] || die "the S3 server did not start"
    log "s3: ${RUNS} runs of an orb dry run from local disk and from $S3_URL, interleaved"
    for ((run = 1; run <= RUNS; run++)); do
        dry_run orb "$W/s3/bench/segment-logs" "$W/out/orb-local.ndjson"
        measure s3-local "${CMD[@]}"
        dry_run orb s3://bench/segment-logs/ "$W/out/orb-s3.ndjson"
        measure s3-remote env AWS_ENDPOINT_URL="$S3_URL" AWS_EC2_METADATA_DISABLED=true \
            "${CMD[@]}" --no-sign-request
    done
    kill "$S3_PID" 2>/dev/null || true
    wait "$S3_PID" 2>/dev/null || true
    SERVER_PID=""
    cmp -s <(sed 's/"source":"[^"]*"//g' "$W/out/orb-local.ndjson") \
        <(sed 's/"source":"[^"]*"//g' "$W/out/orb-s3.ndjson") ||
        die "s3: the dry run from S3 differs from the one from disk"
    throughput_row "orb dry run, gzip archive on local disk (8 objects)" s3-local "$T_EVENTS" "$T_BYTES" "1.00" "" ""
    slow=$(awk -v l="$(best_time s3-local)" -v t="$(best_time s3-remote)" 'BEGIN { printf "%.2f", t / l }')
    throughput_row "the same from a loopback S3 server (s3s-fs)" s3-remote "$T_EVENTS" "$T_BYTES" \
        "time ${slow}x local" "<= 1.50x" "$(verdict "$slow" "<=" 1.5)"
fi

# ---------------------------------------------------------------- jq
if ! skipped jq; then
    if [[ $HAVE_JQ == 1 ]]; then
        log "jq: ${RUNS} runs of jq -c -f benches/orb.jq and of the orb dry run on ${JQMB} MB"
        for ((run = 1; run <= RUNS; run++)); do
            measure jq-orb --stdout "$W/out/jq.ndjson" jq -c -f "$ROOT/benches/orb.jq" "$W/corpus-jq.ndjson"
            dry_run orb "$W/corpus-jq.ndjson" "$W/out/orb-jq.ndjson"
            measure jq-segrelay "${CMD[@]}"
        done
        speedup=$(awk -v j="$(best_time jq-orb)" -v s="$(best_time jq-segrelay)" 'BEGIN { printf "%.1f", j / s }')
        throughput_row "jq -c -f benches/orb.jq (${JQMB} MB)" jq-orb "$J_EVENTS" "$J_BYTES" "1.00" "" ""
        throughput_row "orb dry run (same ${JQMB} MB), vs jq" jq-segrelay "$J_EVENTS" "$J_BYTES" \
            "${speedup}x jq" ">= 30x" "$(verdict "$speedup" ">=" 30)"
    else
        row "jq" "n/a" "n/a" "jq not installed" "" "" ""
    fi
fi

# ---------------------------------------------------------------- the server
export AMBERFLO_API_KEY=bench-key ORB_API_KEY=bench-key KABLE_API_KEY=bench-key
start_server() { # start_server LATENCY_MS
    stop_server
    : >"$W/server.out"
    "$BIN/examples/latency_server" --latency-ms "$1" --idle-timeout-s 600 --stats "$W/server.stats" \
        >"$W/server.out" 2>>"$W/server.log" &
    SERVER_PID=$!
    local i
    for ((i = 0; i < 100; i++)); do
        [[ -s $W/server.out ]] && break
        sleep 0.05
    done
    PORT=$(head -n 1 "$W/server.out")
    [[ -n $PORT ]] || die "the latency server did not start (see $W/server.log)"
    # Settings for sending: the sample's, pointed at the server.
    awk -v base="http://127.0.0.1:$PORT" '
        /^\[destinations\.[a-z]+\]/ { print; name = $0; gsub(/^\[destinations\.|\]$/, "", name)
            print "endpoint = \"" base (name == "orb" ? "/v1" : "") "\""; next }
        /^[[:space:]]*endpoint[[:space:]]*=/ { next }
        { print }' "$SETTINGS" >"$W/settings-send.toml"
}
stop_server() {
    if [[ -n $SERVER_PID ]]; then
        kill "$SERVER_PID" 2>/dev/null || true
        wait "$SERVER_PID" 2>/dev/null || true
        SERVER_PID=""
    fi
}
server_stat() { sed -n "s/.*$1=\([0-9]*\).*/\1/p" "$W/server.stats"; }
send() { # send DEST CONCURRENCY INPUT SUMMARY [more args]: the command, in CMD
    local dest=$1 conc=$2 input=$3 summary=$4
    shift 4
    CMD=("$SEGRELAY" send -q -c "${SEND_SETTINGS:-$W/settings-send.toml}" -d "$dest" --concurrency "$conc"
        --summary "$summary" "$@" "$input")
}
summary_field() { tr -d ' \n' <"$1" | sed -n "s/.*\"$2\":\([0-9.]*\).*/\1/p"; }

# send_case DEST CONCURRENCY BATCH LABEL: RUNS sends of enough track events for
# ROUNDS full batches per sending thread; a row, a note, and the request bytes
# the server received in one run (as sent: gzipped when they were), in WIRE_BYTES.
send_case() {
    local dest=$1 conc=$2 batch=$3 label=$4
    lines=$(awk -v b="$batch" -v c="$conc" -v r="$ROUNDS" -v s="$TRACK_SHARE" 'BEGIN { n = b * c * r / s; printf "%d", (n == int(n)) ? n : int(n) + 1 }')
    ((lines > L_EVENTS)) && lines=$L_EVENTS
    input=$W/send-$dest-$conc.ndjson
    head -n "$lines" "$W/corpus-large.ndjson" >"$input"
    name=send-$dest-c$conc${SEND_SETTINGS:+-$(basename "$SEND_SETTINGS" .toml)}
    conns0=$(server_stat connections)
    bytes0=$(server_stat bytes)
    for ((run = 1; run <= RUNS; run++)); do
        send "$dest" "$conc" "$input" "$W/out/$name-$run.json" --types track
        measure "$name" "${CMD[@]}"
        echo "$(summary_field "$W/out/$name-$run.json" sent) $(summary_field "$W/out/$name-$run.json" requests)" >>"$W/samples/$name.sent"
    done
    conns=$(($(server_stat connections) - conns0))
    WIRE_BYTES=$((($(server_stat bytes) - bytes0) / RUNS))
    # The best run, and its events sent.
    best=$(awk 'NR == 1 || $1 < m { m = $1; i = NR } END { print i }' "$W/samples/$name")
    t=$(sed -n "${best}p" "$W/samples/$name" | cut -d' ' -f1)
    sent=$(sed -n "${best}p" "$W/samples/$name.sent" | cut -d' ' -f1)
    requests=$(sed -n "${best}p" "$W/samples/$name.sent" | cut -d' ' -f2)
    ideal=$(awk -v b="$batch" -v c="$conc" -v l="$LATENCY_MS" 'BEGIN { print b * c * 1000 / l }')
    rate=$(awk -v n="$sent" -v t="$t" 'BEGIN { print n / t }')
    share=$(awk -v r="$rate" -v i="$ideal" 'BEGIN { printf "%.0f", 100 * r / i }')
    bytes=$(stat -c %s "$input")
    NOTES+=("$label: $lines input lines, $sent events sent in $requests requests by the best run, $WIRE_BYTES request body bytes a run; the server saw $conns connections over the $RUNS runs")
    row "$label, ${LATENCY_MS} ms" \
        "$(fmt_rate "$rate")" "$(awk -v b="$bytes" -v t="$t" 'BEGIN { printf "%.1f", b / 1e6 / t }')" \
        "${share}% of ideal $(fmt_rate "$ideal")/s" ">= 70%" "$(verdict "$share" ">=" 70)" "$(mib "$(max_rss "$name")")"
}

if ! skipped send; then
    log "send: latency ${LATENCY_MS} ms, concurrency ${CONCURRENCY}, ${ROUNDS} rounds, track calls only (--types track)"
    start_server "$LATENCY_MS"
    for dest in orb kable amberflo; do
        case $dest in amberflo) batch=100 ;; *) batch=500 ;; esac
        for conc in $CONCURRENCY; do
            send_case "$dest" "$conc" "$batch" "$dest send, concurrency $conc"
        done
    done
    # Amberflo's optional gzip bodies (gzip_requests), against the same input.
    plain_bytes=$WIRE_BYTES
    awk '{ print } /^\[destinations\.amberflo\]/ { print "gzip_requests = true" }' \
        "$W/settings-send.toml" >"$W/settings-send-gzip.toml"
    SEND_SETTINGS=$W/settings-send-gzip.toml send_case amberflo "$conc" 100 \
        "amberflo send, concurrency $conc, gzip bodies"
    NOTES+=("amberflo request bodies, concurrency $conc: $plain_bytes bytes plain, $WIRE_BYTES gzipped ($(awk -v p="$plain_bytes" -v g="$WIRE_BYTES" 'BEGIN { printf "%.1f", p / g }')x smaller)")
fi

# ---------------------------------------------------------------- large input: peak RSS
if ! skipped large; then
    log "large input: ${MB} MB, amberflo dry run and orb send (concurrency 4, ${LARGE_LATENCY_MS} ms)"
    dry_run amberflo "$W/corpus-large.ndjson" "$W/out/large-amberflo.ndjson"
    measure large-dry "${CMD[@]}"
    rm -f "$W/out/large-amberflo.ndjson"
    rss=$(max_rss large-dry)
    throughput_row "amberflo dry run, ${MB} MB (peak RSS)" large-dry "$L_EVENTS" "$L_BYTES" "" "< 64 MiB" \
        "$(verdict "$rss" "<" 65536)"
    start_server "$LARGE_LATENCY_MS"
    send orb 4 "$W/corpus-large.ndjson" "$W/out/large-send.json"
    measure large-send "${CMD[@]}"
    rss=$(max_rss large-send)
    throughput_row "orb send, concurrency 4, ${LARGE_LATENCY_MS} ms, ${MB} MB (peak RSS)" large-send "$L_EVENTS" "$L_BYTES" "" "< 64 MiB" \
        "$(verdict "$rss" "<" 65536)"
fi

# ---------------------------------------------------------------- memory
# Each dry run's peak RSS on the large corpus and on one twice its size, and
# where it goes: runs with and without each part, on both corpora.
#   start-up      a one-line dry run: the binary, the allocator, the threads
#   read-ahead    --types alias: every line read and parsed, every event
#                 skipped (nothing translated, batched or kept): the chunks of
#                 lines in flight, beyond start-up
#   records       an orb dry run beyond --types alias: the window of keys, the
#                 records between the threads that prepare them and the one
#                 that writes them (the ledger), the batches. Of it, the window
#                 is computed from the keys it holds (the records sent): 20
#                 bytes an entry and a table of 4-byte slots, a power of two
#                 at least 1.5 times the keys (see src/run/dedupe/window.rs)
#   customers     amberflo against amberflo --types track,page,screen: the
#                 identifies folded ahead, the customer records kept, the
#                 customers known
if ! skipped memory; then
    log "memory: dry runs of ${MB} and $((2 * MB)) MB, and the breakdown"
    for dest in amberflo orb kable; do
        for size in large double; do
            dry_run "$dest" "$W/corpus-$size.ndjson" "$W/out/mem.ndjson"
            measure "mem-$dest-$size" "${CMD[@]}"
            rm -f "$W/out/mem.ndjson"
        done
    done
    D_BYTES=$(stat -c %s "$W/corpus-double.ndjson")
    times_or_na() { if [[ -n $1 && $1 != n/a ]]; then echo "${1}x"; else echo n/a; fi; }
    for dest in amberflo orb kable; do
        r1=$(max_rss "mem-$dest-large")
        r2=$(max_rss "mem-$dest-double")
        worst=$((r1 > r2 ? r1 : r2))
        # Without the throughput section, its two columns are n/a.
        ratio_verdict=n/a cpu_verdict=n/a
        [[ -n ${RATIO[$dest]:-} ]] && ratio_verdict=$(verdict "${RATIO[$dest]}" ">=" 2.0)
        [[ ${CPU_RATIO[$dest]:-n/a} != n/a ]] && cpu_verdict=$(verdict "${CPU_RATIO[$dest]}" "<=" 0.8)
        TARGETS+=("| $dest | $(times_or_na "${RATIO[$dest]:-}") | >= 2.00x | $(times_or_na "${CPU_RATIO[$dest]:-}") | <= 0.80x | $(mib "$r1") | $(mib "$r2") | < 48 MiB | $ratio_verdict / $cpu_verdict / $(verdict "$worst" "<" 49152) |")
    done
    # The breakdown, on both corpora.
    head -n 1 "$W/corpus-large.ndjson" >"$W/one-line.ndjson"
    dry_run orb "$W/one-line.ndjson" "$W/out/mem.ndjson"
    measure mem-start "${CMD[@]}"
    start=$(max_rss mem-start)
    part() { MEMORY+=("| $1 | $2 | $3 | $4 |"); }
    window_mib() { # window_mib KEYS: the window's size by its layout, MiB
        awk -v k="$1" 'BEGIN { s = 1024; while (s * 2 < k * 3) s *= 2; if (k > 1000000) { k = 1000000; s = 1500001 }
            printf "%.1f MiB", (k * 20 + s * 4) / 1048576 }'
    }
    declare -A R=()
    for size in large double; do
        dry_run orb "$W/corpus-$size.ndjson" "$W/out/mem.ndjson" --types alias
        measure "mem-read-$size" "${CMD[@]}"
        dry_run orb "$W/corpus-$size.ndjson" "$W/out/mem.ndjson" --summary "$W/out/mem-orb-$size.json"
        measure "mem-orb-summary-$size" "${CMD[@]}"
        dry_run amberflo "$W/corpus-$size.ndjson" "$W/out/mem.ndjson" --types track,page,screen
        measure "mem-no-identify-$size" "${CMD[@]}"
        R[read-$size]=$(max_rss "mem-read-$size")
        R[orb-$size]=$(max_rss "mem-orb-$size")
        R[amberflo-$size]=$(max_rss "mem-amberflo-$size")
        R[no-identify-$size]=$(max_rss "mem-no-identify-$size")
        R[keys-$size]=$(summary_field "$W/out/mem-orb-$size.json" sent)
    done
    rm -f "$W/out/mem.ndjson"
    pair() { echo "$(mib "$1") | $(mib "$2")"; }
    part "start-up (a one-line orb dry run)" "$(mib "$start")" "$(mib "$start")" "the binary, the allocator, the threads"
    part "read-ahead buffers (orb --types alias, beyond start-up)" \
        "$(mib "$((R[read-large] - start))")" "$(mib "$((R[read-double] - start))")" "chunks of lines in flight, read and parsed"
    part "records (orb, beyond --types alias)" \
        "$(mib "$((R[orb-large] - R[read-large]))")" "$(mib "$((R[orb-double] - R[read-double]))")" \
        "the window, the ledger, the batches"
    part "of which the window (computed)" "$(window_mib "${R[keys-large]}")" "$(window_mib "${R[keys-double]}")" \
        "${R[keys-large]} and ${R[keys-double]} keys; at most 24.8 MiB (1,000,000 keys)"
    part "customers (amberflo, beyond --types track,page,screen)" \
        "$(mib "$((R[amberflo-large] - R[no-identify-large]))")" "$(mib "$((R[amberflo-double] - R[no-identify-double]))")" \
        "identifies folded ahead, customer records kept, customers known"
    part "orb dry run" "$(mib "${R[orb-large]}")" "$(mib "${R[orb-double]}")" ""
    part "amberflo dry run" "$(mib "${R[amberflo-large]}")" "$(mib "${R[amberflo-double]}")" ""
    NOTES+=("memory: the large corpus is $((L_BYTES / 1000000)) MB, the one twice its size $((D_BYTES / 1000000)) MB; a part's figure is the difference of two runs' peak RSS, so it moves by a MiB or so between runs")
fi

# ---------------------------------------------------------------- checkpoint
# A month's filter over a year: most lines settle without a request (filtered),
# which is where writing the checkpoint too often would show.
if ! skipped checkpoint; then
    log "checkpoint: ${RUNS} runs of an orb send of a month of a year (${YMB} MB), with and without --checkpoint, interleaved"
    start_server "$LARGE_LATENCY_MS"
    month=(--since 2024-09-01 --until 2024-10-01)
    Y_EVENTS=$(wc -l <"$W/corpus-year.ndjson")
    Y_BYTES=$(stat -c %s "$W/corpus-year.ndjson")
    for ((run = 1; run <= RUNS; run++)); do
        send orb 1 "$W/corpus-year.ndjson" "$W/out/month-plain.json" "${month[@]}"
        measure month-plain "${CMD[@]}"
        send orb 1 "$W/corpus-year.ndjson" "$W/out/month-checkpoint.json" "${month[@]}" \
            --checkpoint "$W/out/month.checkpoint" --restart
        measure month-checkpoint "${CMD[@]}"
    done
    # Once more, unmeasured, with -v: how often the checkpoint was written.
    send orb 1 "$W/corpus-year.ndjson" "$W/out/month-count.json" "${month[@]}" \
        --checkpoint "$W/out/month.checkpoint" --restart
    verbose=()
    for arg in "${CMD[@]}"; do
        [[ $arg == -q ]] && arg=-v
        verbose+=("$arg")
    done
    "${verbose[@]}" 2>"$W/month-verbose.log" >/dev/null || true
    writes=$(sed -n 's/.* written \([0-9]*\) times\{0,1\} by this run.*/\1/p' "$W/month-verbose.log")
    sent=$(summary_field "$W/out/month-checkpoint.json" sent)
    requests=$(summary_field "$W/out/month-checkpoint.json" requests)
    slow=$(awk -v p="$(best_time month-plain)" -v t="$(best_time month-checkpoint)" 'BEGIN { printf "%.2f", t / p }')
    throughput_row "orb send, a month of a year (${YMB} MB), no checkpoint" month-plain "$Y_EVENTS" "$Y_BYTES" "1.00" "" ""
    throughput_row "the same with --checkpoint" month-checkpoint "$Y_EVENTS" "$Y_BYTES" \
        "time ${slow}x" "<= 1.10x" "$(verdict "$slow" "<=" 1.1)"
    NOTES+=("checkpoint rows: $Y_EVENTS input lines over a year, $sent events of the month sent in $requests requests, ${LARGE_LATENCY_MS} ms latency; the checkpoint was written ${writes:-?} times in a run")
fi
stop_server

# ---------------------------------------------------------------- start-up
STARTUP=()
if ! skipped startup; then
    head -n 1 "$W/corpus.ndjson" >"$W/one.ndjson"
    help_cmd="$SEGRELAY --help"
    one_cmd="$SEGRELAY send --dry-run -q --format ndjson -c $SETTINGS -d orb -o $W/out/one.ndjson $W/one.ndjson"
    if [[ $HAVE_HYPERFINE == 1 ]]; then
        log "start-up: hyperfine"
        hyperfine -N --warmup 5 --runs 50 --export-json "$W/startup.json" "$help_cmd" "$one_cmd" >/dev/null 2>&1 ||
            hyperfine --warmup 5 --runs 50 --export-json "$W/startup.json" "$help_cmd" "$one_cmd" >/dev/null
        how="hyperfine, 50 runs"
        while read -r mean sd min max; do
            STARTUP+=("$mean $sd $min $max")
        done < <(awk '
            /"mean":/ { gsub(/[^0-9.e-]/, "", $2); mean = $2 }
            /"stddev":/ { gsub(/[^0-9.e-]/, "", $2); sd = $2 }
            /"min":/ { gsub(/[^0-9.e-]/, "", $2); min = $2 }
            /"max":/ { gsub(/[^0-9.e-]/, "", $2); max = $2; printf "%.2f %.2f %.2f %.2f\n", mean * 1000, sd * 1000, min * 1000, max * 1000 }' "$W/startup.json")
    else
        log "start-up: a loop of 50 runs (no hyperfine)"
        how="a loop of 50 runs"
        for cmd in "$help_cmd" "$one_cmd"; do
            : >"$W/loop.txt"
            for ((i = 0; i < 50; i++)); do
                t0=$(date +%s%N)
                $cmd >/dev/null 2>&1 || true
                t1=$(date +%s%N)
                echo $(((t1 - t0) / 1000)) >>"$W/loop.txt"
            done
            STARTUP+=("$(awk '{ s += $1; ss += $1 * $1; if (NR == 1 || $1 < mn) mn = $1; if ($1 > mx) mx = $1 }
                END { m = s / NR; printf "%.2f %.2f %.2f %.2f", m / 1000, sqrt(ss / NR - m * m) / 1000, mn / 1000, mx / 1000 }' "$W/loop.txt")")
        done
    fi
fi

# ---------------------------------------------------------------- report
report() {
    rev=$(git -C "$ROOT" rev-parse --short HEAD 2>/dev/null || echo unknown)
    dirty=$(git --no-optional-locks -C "$ROOT" status --porcelain -- src 2>/dev/null | wc -l)
    echo
    echo "## segrelay benchmark"
    echo
    echo "commit $rev$( ((dirty > 0)) && echo " + uncommitted changes in src/"); $(nproc) cores; load average at the end: $(cut -d' ' -f1-3 /proc/loadavg)"
    echo "corpus: seed $SEED, $T_EVENTS events / $((T_BYTES / 1000000)) MB (throughput), $J_EVENTS / $((J_BYTES / 1000000)) MB (jq), $L_EVENTS / $((L_BYTES / 1000000)) MB (large); $((T_BYTES / T_EVENTS)) bytes an event"
    echo "best of $RUNS runs per case (large: 1 run); events/s counts input events read (send rows: events sent); MB = 10^6 bytes of input; peak RSS: $RSS_HOW"
    echo "settings: samples/segrelay.toml without max_events_per_minute; send rows: the same, endpoints on the loopback server, --types track"
    echo
    echo "| case | events/s | MB/s | ratio | target | verdict | peak RSS |"
    echo "|---|---:|---:|---|---|---|---:|"
    printf '%s\n' "${ROWS[@]}"
    if ((${#TARGETS[@]} > 0)); then
        echo
        echo "dry-run targets (ratio: throughput against the baseline on the default threads; CPU: user + system time with -j 1 against the baseline's; RSS: peak, on the large corpus and on one twice its size)"
        echo
        echo "| destination | ratio | target | CPU ratio, -j 1 | target | peak RSS ${MB} MB | peak RSS $((2 * MB)) MB | target | verdicts |"
        echo "|---|---:|---|---:|---|---:|---:|---|---|"
        printf '%s\n' "${TARGETS[@]}"
    fi
    if ((${#MEMORY[@]} > 0)); then
        echo
        echo "memory (peak RSS; a part: the difference between a run with it and one without)"
        echo
        echo "| part | ${MB} MB | $((2 * MB)) MB | what |"
        echo "|---|---:|---:|---|"
        printf '%s\n' "${MEMORY[@]}"
    fi
    if ((${#STARTUP[@]} == 2)); then
        echo
        echo "start-up ($how)"
        echo
        echo "| command | mean ms | ± ms | min ms | max ms |"
        echo "|---|---:|---:|---:|---:|"
        read -r m s mn mx <<<"${STARTUP[0]}"
        echo "| segrelay --help | $m | $s | $mn | $mx |"
        read -r m s mn mx <<<"${STARTUP[1]}"
        echo "| one-line orb dry run | $m | $s | $mn | $mx |"
    fi
    if ((${#NOTES[@]} > 0)); then
        echo
        printf -- '- %s\n' "${NOTES[@]}"
    fi
}
report | tee "$W/results.md"
if [[ -n ${SEGRELAY_BENCH_OUT:-} ]]; then
    cp "$W/results.md" "$SEGRELAY_BENCH_OUT"
fi
