#!/usr/bin/env bash
# How soon the embedded autoscaler meets a burst on the real broker.
#
# A stream of one shard carries LOW events/s; from BURST_AT_S on, HIGH
# events/s, which needs NEEDED shards at the broker's capacity per shard
# (CAPACITY events/s, 20% headroom). The autoscaler runs with its defaults
# (a tick every 10 s), once with its watch between ticks (every second, the
# default) and once without it, ROUNDS times each, alternating, a fresh
# broker and data directory per run, the burst at a random point between
# two ticks. From each run's decision log: the time
# from the burst's start to the first split and to NEEDED open shards, and
# the producers' ack latency over the burst (open loop, from the intended
# send time). Writes the table between the burst markers in BENCHMARKS.md.
#
#   benches/burst.sh                   # ROUNDS=3 LOW=1000 HIGH=8000 CAPACITY=2000
#   PROFILE=dev ROUNDS=1 benches/burst.sh --no-update   # a check of the script
set -euo pipefail
cd "$(dirname "$0")/.."

ROUNDS=${ROUNDS:-3}
LOW=${LOW:-1000}
HIGH=${HIGH:-8000}
CAPACITY=${CAPACITY:-2000}
BURST_AT_S=${BURST_AT_S:-25}
BURST_S=${BURST_S:-40}
UPDATE=1
[ "${1:-}" = "--no-update" ] && UPDATE=0
OUT=target/bench-burst
rm -rf "$OUT"
mkdir -p "$OUT"

PROFILE=${PROFILE:-release}
cargo build --profile "$PROFILE" -q -p surge-broker -p surge-loadgen
if [ "$PROFILE" = dev ]; then SURGE=target/debug/surge; else SURGE=target/$PROFILE/surge; fi

# The trace: LOW until the burst, HIGH for BURST_S seconds.
TRACE="$OUT/burst.csv"
{
  echo "timestamp,value"
  for s in $(seq 0 $((BURST_AT_S - 1))); do echo "$s,$LOW"; done
  for s in $(seq "$BURST_AT_S" $((BURST_AT_S + BURST_S))); do echo "$s,$HIGH"; done
} >"$TRACE"

BROKER_PID=
DATA=
stop_broker() {
  if [ -n "$BROKER_PID" ]; then
    kill "$BROKER_PID" 2>/dev/null || true
    wait "$BROKER_PID" 2>/dev/null || true
  fi
  [ -n "$DATA" ] && rm -rf "$DATA"
  BROKER_PID=
  DATA=
}
trap stop_broker EXIT

run() { # name watch_interval_ms
  DATA=$(mktemp -d)
  "$SURGE" serve --data-dir "$DATA" --listen 127.0.0.1:0 --http-listen 127.0.0.1:0 \
    --set autoscaler.capacity_per_shard_eps="$CAPACITY" \
    --set autoscaler.watch_interval_ms="$2" >"$OUT/$1.serve.out" 2>"$OUT/$1.serve.log" &
  BROKER_PID=$!
  for _ in $(seq 100); do
    grep -q "^surge listening on" "$OUT/$1.serve.out" && break
    sleep 0.1
  done
  local broker http
  broker=$(sed -n 's/^surge listening on //p' "$OUT/$1.serve.out")
  http=$(sed -n 's/^surge http listening on //p' "$OUT/$1.serve.out")
  sync
  # The burst lands anywhere between two ticks: wait a random part of one.
  sleep "$((RANDOM % 10)).$((RANDOM % 10))"
  "$SURGE" loadgen --broker "$broker" --create-stream --stream burst --shards 1 \
    --durability write --producers 2 --event-size 100 --keys 10000 \
    --trace "$TRACE" --warmup 0s --quiet --json "$OUT/$1.json"
  curl -sf "http://$http/decisions?stream=burst&limit=1000" >"$OUT/$1.decisions.json"
  stop_broker
}

for round in $(seq "$ROUNDS"); do
  run "watch-$round" 1000
  run "ticks-$round" 0
done

python3 - "$OUT" "$ROUNDS" "$LOW" "$HIGH" "$CAPACITY" "$BURST_AT_S" "$BURST_S" "$UPDATE" <<'PY'
import json, math, pathlib, subprocess, sys, datetime
out, rounds, low, high, capacity, burst_at, burst_s, update = sys.argv[1:]
rounds, low, high, burst_at, burst_s = int(rounds), int(low), int(high), int(burst_at), int(burst_s)
capacity = float(capacity)
needed = math.ceil(high / (capacity / 1.2))

def result(name):
    report = json.load(open(f"{out}/{name}.json"))
    decisions = json.load(open(f"{out}/{name}.decisions.json"))["decisions"]
    burst_ms = report["started_at_unix_ms"] + burst_at * 1000
    shards, first_split, in_place, by_watch = 1, None, None, 0
    for decision in reversed(decisions):
        for action in decision["actions"]:
            if not action["applied"]:
                continue
            kind = action["kind"]["kind"] if isinstance(action["kind"], dict) else action["kind"]
            shards += {"split": 1, "merge": -1}.get(kind, 0)
            at = decision["at_ms"] - burst_ms
            if kind == "split" and at >= 0:
                first_split = at if first_split is None else first_split
                by_watch += decision["reasons"][0].startswith("between ticks")
            if shards >= needed and in_place is None and at >= 0:
                in_place = at
    burst = [s for s in report["timeline"] if burst_at < s["second"] <= burst_at + burst_s]
    worst_p99 = max(s["produce_p99_us"] for s in burst)
    return first_split, in_place, by_watch, worst_p99, report["counts"]

rows = []
for variant in ["watch", "ticks"]:
    for r in range(1, rounds + 1):
        rows.append((variant, r) + result(f"{variant}-{r}"))

def ms(value):
    return "-" if value is None else f"{value / 1000:.1f}"

lines = [
    f"Measured {datetime.datetime.now(datetime.timezone.utc):%Y-%m-%d %H:%M}Z at "
    f"{subprocess.run(['git', 'rev-parse', '--short=12', 'HEAD'], capture_output=True, text=True).stdout.strip()} "
    f"with `benches/burst.sh` on this machine (`nproc` = "
    f"{subprocess.run(['nproc'], capture_output=True, text=True).stdout.strip()}, broker and load generator on it): "
    f"one shard at {low:,} events/s, then {high:,} events/s from {burst_at} s for {burst_s} s "
    f"(100 B events, durability `write`, 2 producers), capacity {capacity:,.0f} events/s per shard "
    f"at 20% headroom, so the burst needs {needed} shards. A tick every 10 s (the default); "
    "seconds are from the burst's start to the decision.",
    "",
    "| autoscaler | round | first split s | splits by the watch | "
    f"{needed} shards in place s | worst per-second ack p99 in the burst ms | errors / timeouts |",
    "|---|---:|---:|---:|---:|---:|---|",
]
for variant, r, first, in_place, by_watch, p99, counts in rows:
    name = "watch every 1 s (default)" if variant == "watch" else "ticks only (watch off)"
    lines.append(
        f"| {name} | {r} | {ms(first)} | {by_watch} | {ms(in_place)} | {p99 / 1000:.1f} | "
        f"{counts['errors']} / {counts['timeouts']} |"
    )
table = "\n".join(lines)
print(table)
if update == "1":
    path = pathlib.Path("BENCHMARKS.md")
    text = path.read_text()
    begin, end = "<!-- burst:begin -->", "<!-- burst:end -->"
    if begin not in text:
        sys.exit("BENCHMARKS.md has no burst markers")
    head, rest = text.split(begin, 1)
    _, tail = rest.split(end, 1)
    path.write_text(head + begin + "\n" + table + "\n" + end + tail)
PY
