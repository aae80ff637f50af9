#!/usr/bin/env bash
# End-to-end benchmark of Surge (issue 3): measures this machine's limits
# (fio sequential write + fdatasync, also over 4 files and kept up for one
# run's length, fdatasync latency, iperf3 loopback TCP,
# sockperf loopback round-trip latency at the latency runs' rate),
# starts one release broker on 127.0.0.1 and runs the standard loadgen set
# against it, then writes the results table into BENCHMARKS.md between the
# e2e markers. JSON reports, SVG and PNG plots, perf data and logs stay in
# target/bench-e2e/.
#
# Usage: benches/e2e.sh [--quick] [--duration S] [--warmup S] [--no-update]
#   --quick       smoke run: 1 KiB and 1 producer only, 1 s runs, small fio
#                 and iperf3 jobs; never touches BENCHMARKS.md
#   --duration S  measured seconds per run (default 6, or E2E_DURATION_S)
#   --warmup S    warmup seconds per run (default 2, or E2E_WARMUP_S)
#   --no-update   write the table to target/bench-e2e/results.md only
# E2E_DATA_DIR picks the parent of the broker's and fio's files (default:
# target/bench-e2e), so both measure the same filesystem.
#
# The full run takes about 5 minutes on a 2-core machine once built. It
# installs fio and iperf3 from Debian if they are missing (needs root), and
# perf (linux-perf) if it can: with perf, the runs `max-1KiB-p1-fsync` and
# `lat5k-1KiB-p1-write` are profiled (broker and loadgen, task-clock
# samples) and the top symbols of each go under the table, so a missed
# target says where the time went.
# Without perf (or when perf_event_paranoid forbids it) that part is skipped.
set -euo pipefail

QUICK=0
UPDATE=1
DURATION_S=${E2E_DURATION_S:-6}
WARMUP_S=${E2E_WARMUP_S:-2}
COMMAND="benches/e2e.sh${*:+ $*}"
while [[ $# -gt 0 ]]; do
    case "$1" in
        --quick) QUICK=1 ;;
        --duration) DURATION_S=$2; shift ;;
        --warmup) WARMUP_S=$2; shift ;;
        --no-update) UPDATE=0 ;;
        -h|--help) sed -n '2,18p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
        *) echo "e2e.sh: unknown argument $1 (see --help)" >&2; exit 2 ;;
    esac
    shift
done
if [[ $QUICK == 1 ]]; then
    DURATION_S=1
    WARMUP_S=0.5
    UPDATE=0
fi

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$ROOT"
TARGET_DIR=${CARGO_TARGET_DIR:-$ROOT/target}
OUT=$TARGET_DIR/bench-e2e
REPORT=$ROOT/benches/e2e_report.py
SHARDS=4
mkdir -p "$OUT"
rm -f "$OUT"/*.json "$OUT"/*.svg "$OUT"/*.png "$OUT"/*.txt "$OUT"/*.tsv "$OUT"/*.log \
    "$OUT"/*.perf.data "$OUT"/profile.md

log() { printf '[e2e %s] %s\n' "$(date +%H:%M:%S)" "$*" >&2; }
die() { log "error: $*"; exit 1; }

command -v python3 >/dev/null || die "python3 is needed to read the JSON reports"

# --- tools -------------------------------------------------------------------
install_missing() {
    local missing=()
    command -v fio >/dev/null || missing+=(fio)
    command -v iperf3 >/dev/null || missing+=(iperf3)
    command -v sockperf >/dev/null || missing+=(sockperf)
    [[ ${#missing[@]} -eq 0 ]] && return 0
    [[ $(id -u) == 0 ]] || die "missing ${missing[*]}; install them or run as root"
    log "installing ${missing[*]} from Debian"
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
}
install_missing

# perf is optional: only the profile section depends on it.
PERF_OK=0
PERF_HZ=499
# A throughput run, and the latency run of the `write` e2e p99 target.
PERF_LABELS=" max-1KiB-p1-fsync lat5k-1KiB-p1-write "
if ! command -v perf >/dev/null && [[ $(id -u) == 0 ]]; then
    log "installing linux-perf from Debian (optional)"
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends linux-perf \
        >/dev/null 2>&1 || log "no linux-perf package; runs are not profiled"
fi
if command -v perf >/dev/null && perf record -q -e task-clock -o /dev/null -- true >/dev/null 2>&1; then
    PERF_OK=1
else
    log "perf unavailable or not permitted; runs are not profiled"
fi

log "building release binaries"
cargo build --release -q -p surge-broker -p surge-loadgen
SURGE=$TARGET_DIR/release/surge
LOADGEN=$TARGET_DIR/release/surge-loadgen
[[ -x $SURGE && -x $LOADGEN ]] || die "no $SURGE or $LOADGEN after the build"
# A fresh build leaves up to a GB of dirty pages; their writeback would
# share the disk with fio's fdatasyncs and halve the measured limit.
sync

# --- scratch space and cleanup -----------------------------------------------
DATA_PARENT=${E2E_DATA_DIR:-$OUT}
mkdir -p "$DATA_PARENT"
SCRATCH=$(mktemp -d "$DATA_PARENT/scratch.XXXXXX")
BROKER_PID=
IPERF_PID=
SOCKPERF_PID=

PERF_BROKER_PID=
stop_pid() {
    local pid=$1
    [[ -n $pid ]] && kill -0 "$pid" 2>/dev/null || return 0
    kill -TERM "$pid" 2>/dev/null || true
    for _ in $(seq 50); do
        kill -0 "$pid" 2>/dev/null || break
        sleep 0.1
    done
    kill -KILL "$pid" 2>/dev/null || true
    wait "$pid" 2>/dev/null || true
}
cleanup() {
    stop_pid "$PERF_BROKER_PID"
    stop_pid "$IPERF_PID"
    stop_pid "$SOCKPERF_PID"
    stop_pid "$BROKER_PID"
    rm -rf "$SCRATCH"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

free_gib=$(( $(df -Pk "$SCRATCH" | awk 'NR == 2 { print $4 }') / 1024 / 1024 ))
[[ $free_gib -ge 8 ]] || die "only $free_gib GiB free under $SCRATCH; runs need about 8"

# --- machine -----------------------------------------------------------------
GIT_SHA=$(git rev-parse --short HEAD 2>/dev/null || echo unknown)
if [[ -n $(git status --porcelain --untracked-files=no 2>/dev/null) ]]; then
    GIT_SHA="$GIT_SHA (dirty)"
fi
CPU_MODEL=$(awk -F': *' '/^model name/ { print $2; exit }' /proc/cpuinfo)
MEMORY=$(awk '/^MemTotal/ { printf "%.0f GiB", $2 / 1024 / 1024 }' /proc/meminfo)
FILESYSTEM=$(df -PT "$SCRATCH" | awk 'NR == 2 { print $2 " on " $1 }')
# Other work on the machine moves the numbers; the table says how busy it was.
LOAD_START=$(cut -d' ' -f1-3 /proc/loadavg)

# --- limits ------------------------------------------------------------------
if [[ $QUICK == 1 ]]; then
    FIO_SIZE=64m; FIO_SYNC_S=1; IPERF_S=1; FIO_ROUNDS=1
else
    FIO_SIZE=512m; FIO_SYNC_S=5; IPERF_S=5; FIO_ROUNDS=3
fi
mkdir -p "$SCRATCH/fio"
FIO_BW_ARGS="--rw=write --bs=1m --size=$FIO_SIZE --fdatasync=1 --direct=0 --ioengine=psync"
FIO_SYNC_ARGS="--rw=write --bs=4k --size=64m --fdatasync=1 --direct=0 --ioengine=psync --time_based --runtime=$FIO_SYNC_S"
# The limit is the best of a few runs, each on a settled disk: one run
# right after the release build measured 273 MB/s where the next measured
# 911, and a low limit flatters every ratio against it.
FIO_MB_S=0
for round in $(seq "$FIO_ROUNDS"); do
    log "fio: sequential write + fdatasync, 1 MiB writes, $FIO_SIZE (run $round of $FIO_ROUNDS)"
    sync
    # shellcheck disable=SC2086 # the argument lists split on purpose
    fio --name=seqwrite --directory="$SCRATCH/fio" $FIO_BW_ARGS \
        --output-format=json --output="$OUT/fio-write-fdatasync-$round.json" >/dev/null
    rm -f "$SCRATCH"/fio/*
    measured=$(python3 "$REPORT" fio-bw "$OUT/fio-write-fdatasync-$round.json")
    if python3 -c 'import sys; sys.exit(float(sys.argv[1]) <= float(sys.argv[2]))' "$measured" "$FIO_MB_S"; then
        FIO_MB_S=$measured
        cp "$OUT/fio-write-fdatasync-$round.json" "$OUT/fio-write-fdatasync.json"
    fi
done
sync
# Not the target's limit, but where it stands: the stream's shards each
# write and fdatasync their own file at once, and on some disks that
# parallel figure is well below the single-file one.
log "fio: the same, $SHARDS files at once"
# shellcheck disable=SC2086
fio --name=seqwrite --directory="$SCRATCH/fio" $FIO_BW_ARGS --numjobs="$SHARDS" --group_reporting \
    --output-format=json --output="$OUT/fio-write-fdatasync-parallel.json" >/dev/null
rm -f "$SCRATCH"/fio/*
sync
# Also not the target's limit: the same writes kept up for as long as one
# run lasts, buffered and with O_DIRECT. On the 2-core development VM the
# 512 MiB runs above measured 1,152 MB/s where 4 GiB measured 366: past a
# few GiB, buffered writes need page-cache pages the host faults in at
# first touch, while O_DIRECT (no page cache) kept 1,204 MB/s over 6 GiB.
# The broker drops its durable pages behind a window to stay off that
# path (`page_cache_window_bytes`, BENCHMARKS.md).
FIO_RUN_S=$(python3 -c 'import sys; print(round(float(sys.argv[1]) + float(sys.argv[2])))' "$WARMUP_S" "$DURATION_S")
FIO_SUSTAINED_ARGS="--rw=write --bs=1m --size=16g --fdatasync=1 --direct=0 --ioengine=psync --time_based --runtime=$FIO_RUN_S"
log "fio: the same, kept up for ${FIO_RUN_S} s (one run's length)"
# shellcheck disable=SC2086
fio --name=seqwrite --directory="$SCRATCH/fio" $FIO_SUSTAINED_ARGS \
    --output-format=json --output="$OUT/fio-write-fdatasync-sustained.json" >/dev/null
rm -f "$SCRATCH"/fio/*
sync
FIO_DIRECT_ARGS=${FIO_SUSTAINED_ARGS/--direct=0/--direct=1}
log "fio: the same with O_DIRECT, kept up for ${FIO_RUN_S} s"
# shellcheck disable=SC2086
fio --name=seqwrite --directory="$SCRATCH/fio" $FIO_DIRECT_ARGS \
    --output-format=json --output="$OUT/fio-write-fdatasync-direct.json" >/dev/null
rm -f "$SCRATCH"/fio/*
sync
log "fio: fdatasync latency, 4 KiB writes, ${FIO_SYNC_S} s"
# shellcheck disable=SC2086
fio --name=sync4k --directory="$SCRATCH/fio" $FIO_SYNC_ARGS \
    --output-format=json --output="$OUT/fio-fdatasync-4k.json" >/dev/null
rm -rf "$SCRATCH/fio"

IPERF_PORT=$(( 20000 + RANDOM % 20000 ))
log "iperf3: loopback TCP, one stream, ${IPERF_S} s (port $IPERF_PORT)"
iperf3 -s -1 --forceflush -B 127.0.0.1 -p "$IPERF_PORT" >"$OUT/iperf3-server.log" 2>&1 &
IPERF_PID=$!
# The server says when it listens; probing the port instead would use up
# the one client a `-1` server serves.
for _ in $(seq 300); do
    grep -q "listening" "$OUT/iperf3-server.log" 2>/dev/null && break
    sleep 0.1
done
iperf3 -c 127.0.0.1 -p "$IPERF_PORT" -t "$IPERF_S" -J >"$OUT/iperf3.json" \
    || die "iperf3 client failed (server log: $OUT/iperf3-server.log)"
stop_pid "$IPERF_PID"
IPERF_PID=

# The floor under the latency targets: a 1 KiB message and its echo over
# loopback TCP at the lat5k runs' rate, every reply timed.
SOCKPERF_PORT=$(( 20000 + RANDOM % 20000 ))
SOCKPERF_ARGS="under-load --tcp -i 127.0.0.1 --mps 5000 -m 1024 --reply-every 1 -t $IPERF_S"
log "sockperf: loopback round trips, 1 KiB at 5,000/s, ${IPERF_S} s (port $SOCKPERF_PORT)"
sockperf server --tcp -i 127.0.0.1 -p "$SOCKPERF_PORT" >"$OUT/sockperf-server.log" 2>&1 &
SOCKPERF_PID=$!
sleep 0.5
# shellcheck disable=SC2086
sockperf $SOCKPERF_ARGS -p "$SOCKPERF_PORT" >"$OUT/sockperf.txt" 2>&1 \
    || die "sockperf failed (see $OUT/sockperf.txt)"
stop_pid "$SOCKPERF_PID"
SOCKPERF_PID=

FIO_PARALLEL_MB_S=$(python3 "$REPORT" fio-bw "$OUT/fio-write-fdatasync-parallel.json")
FIO_SUSTAINED_MB_S=$(python3 "$REPORT" fio-bw "$OUT/fio-write-fdatasync-sustained.json")
FIO_DIRECT_MB_S=$(python3 "$REPORT" fio-bw "$OUT/fio-write-fdatasync-direct.json")
read -r SYNC_P50_US SYNC_P99_US SYNC_P999_US < <(python3 "$REPORT" fio-sync "$OUT/fio-fdatasync-4k.json")
IPERF_MB_S=$(python3 "$REPORT" iperf "$OUT/iperf3.json")
read -r RTT_P50_US RTT_P99_US RTT_P999_US < <(python3 "$REPORT" sockperf "$OUT/sockperf.txt")
log "limits: fio $FIO_MB_S MB/s ($FIO_PARALLEL_MB_S over $SHARDS files, $FIO_SUSTAINED_MB_S kept up for $FIO_RUN_S s, $FIO_DIRECT_MB_S with O_DIRECT); fdatasync p50/p99/p99.9 $SYNC_P50_US/$SYNC_P99_US/$SYNC_P999_US us; loopback $IPERF_MB_S MB/s, round trip p50/p99/p99.9 $RTT_P50_US/$RTT_P99_US/$RTT_P999_US us"
cat >"$OUT/limits.json" <<EOF
{
  "fio_write_fdatasync_mb_s": $FIO_MB_S,
  "fio_write_fdatasync_parallel_mb_s": $FIO_PARALLEL_MB_S,
  "fio_parallel_files": $SHARDS,
  "fio_write_fdatasync_sustained_mb_s": $FIO_SUSTAINED_MB_S,
  "fio_sustained_cmd": "fio $FIO_SUSTAINED_ARGS",
  "fio_write_fdatasync_direct_mb_s": $FIO_DIRECT_MB_S,
  "fio_direct_cmd": "fio $FIO_DIRECT_ARGS",
  "fdatasync_4k_us": [$SYNC_P50_US, $SYNC_P99_US, $SYNC_P999_US],
  "iperf3_loopback_mb_s": $IPERF_MB_S,
  "loopback_rtt_us": [$RTT_P50_US, $RTT_P99_US, $RTT_P999_US],
  "sockperf_cmd": "sockperf $SOCKPERF_ARGS",
  "fio_bw_cmd": "fio $FIO_BW_ARGS",
  "fio_sync_cmd": "fio $FIO_SYNC_ARGS",
  "iperf_cmd": "iperf3 -c 127.0.0.1 -t $IPERF_S -J"
}
EOF

# --- broker ------------------------------------------------------------------
log "starting the broker"
SURGE_LOG=info "$SURGE" serve --data-dir "$SCRATCH/broker" --listen 127.0.0.1:0 \
    --http-listen off --set autoscaler.enabled=false \
    >"$OUT/broker.log" 2>&1 &
BROKER_PID=$!
ADDR=
for _ in $(seq 300); do
    ADDR=$(sed -n 's/^surge listening on //p' "$OUT/broker.log" | head -n 1)
    [[ -n $ADDR ]] && break
    kill -0 "$BROKER_PID" 2>/dev/null || die "the broker exited; see $OUT/broker.log"
    sleep 0.1
done
[[ -n $ADDR ]] || die "the broker printed no address in 30 s; see $OUT/broker.log"
IO_BACKEND=$(grep -o 'io="\{0,1\}[a-z_]*' "$OUT/broker.log" | head -n 1 | sed 's/io="\{0,1\}//')
log "broker at $ADDR (pid $BROKER_PID, io ${IO_BACKEND:-unknown})"

# --- runs --------------------------------------------------------------------
MANIFEST=$OUT/runs.tsv
: >"$MANIFEST"
RUN_SEQ=0

# run_loadgen KIND SIZE PRODUCERS DURABILITY LINGER_MS [extra loadgen flags...]
# Runs one bounded loadgen on a fresh stream, deletes the stream afterwards
# (so the disk does not fill up), and appends the run to the manifest. A
# failed run is recorded, not fatal: its row says so.
run_loadgen() {
    local kind=$1 size=$2 producers=$3 durability=$4 linger=$5
    shift 5
    RUN_SEQ=$((RUN_SEQ + 1))
    local label="${kind}-${size}-p${producers}-${durability}"
    local stream="e2e-$$-$RUN_SEQ-$label"
    log "run $RUN_SEQ: $label $*"
    # Each run starts with the disk settled: the gigabytes an earlier `max`
    # run left in the page cache would otherwise be written back under this
    # run's fdatasyncs (stalls of 100-200 ms in a 5,000/s fsync run).
    sync
    local profiled=0 wrapper=()
    if [[ $PERF_OK == 1 && $PERF_LABELS == *" $label "* ]]; then
        profiled=1
        wrapper=(perf record -q -e task-clock -F "$PERF_HZ" -g -o "$OUT/$label-loadgen.perf.data" --)
        perf record -q -e task-clock -F "$PERF_HZ" -g -p "$BROKER_PID" \
            -o "$OUT/$label-broker.perf.data" >"$OUT/perf-broker.log" 2>&1 &
        PERF_BROKER_PID=$!
    fi
    local started_s
    started_s=$(date +%s.%N)
    if ! "${wrapper[@]}" "$LOADGEN" --broker "$ADDR" --stream "$stream" --create-stream \
        --shards "$SHARDS" --durability "$durability" --producers "$producers" \
        --event-size "$size" --linger-ms "$linger" \
        --duration "${DURATION_S}s" --warmup "${WARMUP_S}s" --quiet \
        --json "$OUT/$label.json" --svg "$OUT/$label.svg" --png "$OUT/$label.png" "$@" \
        >"$OUT/$label.txt" 2>&1; then
        log "run $label failed; see $OUT/$label.txt"
        rm -f "$OUT/$label.json"
    fi
    if [[ $profiled == 1 ]]; then
        # perf writes its file on SIGINT.
        kill -INT "$PERF_BROKER_PID" 2>/dev/null || true
        wait "$PERF_BROKER_PID" 2>/dev/null || true
        PERF_BROKER_PID=
        profile_summary "$label" "$(python3 -c "import sys; print(f'{float(sys.argv[2]) - float(sys.argv[1]):.2f}')" "$started_s" "$(date +%s.%N)")"
    fi
    "$SURGE" stream delete "$stream" --broker "$ADDR" >/dev/null 2>&1 ||
        log "could not delete stream $stream"
    kill -0 "$BROKER_PID" 2>/dev/null || die "the broker died during $label; see $OUT/broker.log"
    printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\n' "$label" "$kind" "$size" "$producers" \
        "$durability" "$linger" "$OUT/$label.json" >>"$MANIFEST"
}

# profile_summary LABEL WALL_S: CPU cores each process used during the run
# (task-clock samples over PERF_HZ x wall time) and its top symbols, as
# markdown appended to $OUT/profile.md.
profile_summary() {
    local label=$1 wall_s=$2 who data samples cores
    {
        echo "Where the time goes during \`$label\` (perf, task-clock sampled at $PERF_HZ Hz, ${wall_s} s of wall time including setup; self time by symbol, top entries over 1%):"
        echo
        for who in broker loadgen; do
            data=$OUT/$label-$who.perf.data
            if [[ ! -s $data ]]; then
                echo "- $who: no profile (see $OUT/perf-broker.log)"
                continue
            fi
            samples=$(perf report -i "$data" --stdio -n --no-children --sort comm -g none 2>/dev/null |
                awk '$1 ~ /%$/ { total += $2 } END { print total + 0 }')
            cores=$(python3 -c "import sys; print(f'{int(sys.argv[1]) / ($PERF_HZ * float(sys.argv[2])):.2f}')" "$samples" "$wall_s")
            echo "- $who: $cores CPU cores on average ($samples samples)"
            echo
            echo '```text'
            # awk reads to the end (no SIGPIPE under pipefail), keeps 15 rows.
            perf report -i "$data" --stdio --no-children --sort dso,symbol -g none \
                --percent-limit 1 2>/dev/null |
                awk '!/^#/ && NF && ++rows <= 15 { line = substr($0, 1, 160); sub(/[ -]+$/, "", line); print line }'
            echo '```'
            echo
        done
    } >>"$OUT/profile.md"
}

if [[ $QUICK == 1 ]]; then
    SIZES=(1KiB); PRODUCER_COUNTS=(1)
else
    SIZES=(100 1KiB); PRODUCER_COUNTS=(1 4)
fi
for size in "${SIZES[@]}"; do
    for producers in "${PRODUCER_COUNTS[@]}"; do
        for durability in fsync write; do
            run_loadgen max "$size" "$producers" "$durability" 1
            max_json="$OUT/max-${size}-p${producers}-${durability}.json"
            if [[ -f $max_json ]]; then
                rate=$(python3 "$REPORT" rate "$max_json" 0.5)
                run_loadgen open50 "$size" "$producers" "$durability" 1 --rate "$rate"
            fi
        done
    done
done
for durability in write fsync; do
    run_loadgen lat5k 1KiB 1 "$durability" 0 --rate 5000 --consumers 1
done

# --- report ------------------------------------------------------------------
python3 - "$COMMAND" "$(date -u +%Y-%m-%dT%H:%MZ)" "$GIT_SHA" "$(nproc)" "$CPU_MODEL" \
    "$MEMORY" "$(uname -r)" "$FILESYSTEM" "${IO_BACKEND:-unknown}" "$WARMUP_S" "$DURATION_S" \
    "$LOAD_START" "$(cut -d' ' -f1-3 /proc/loadavg)" \
    >"$OUT/machine.json" <<'PY'
import json, sys
keys = ["command", "date", "git_sha", "nproc", "cpu_model", "memory", "kernel",
        "filesystem", "io_backend", "warmup_s", "duration_s", "load_start", "load_end"]
print(json.dumps(dict(zip(keys, sys.argv[1:])), indent=2))
PY
render=(python3 "$REPORT" render --manifest "$MANIFEST" --limits "$OUT/limits.json"
    --machine "$OUT/machine.json")
if [[ -s $OUT/profile.md ]]; then
    render+=(--profile "$OUT/profile.md")
fi
if [[ $UPDATE == 1 ]]; then
    render+=(--update "$ROOT/BENCHMARKS.md")
fi
"${render[@]}" >"$OUT/results.md"
cat "$OUT/results.md"
log "done: reports in $OUT$([[ $UPDATE == 1 ]] && echo ", table in BENCHMARKS.md")"
