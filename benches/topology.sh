#!/usr/bin/env bash
# Live-topology benchmark: how long a split and a merge take to take effect
# inside the broker, and what producers see while they happen.
#
# Two open-loop runs at the same rate against one broker on 127.0.0.1: one
# steady, one while a split or merge happens every CHANGE_EVERY_S seconds.
# Writes the results between the topology markers in BENCHMARKS.md.
#
#   benches/topology.sh            # RATE=5000 DURATION_S=20 CHANGE_EVERY_S=2
#   PROFILE=dev benches/topology.sh   # a quick check of the script itself
set -euo pipefail
cd "$(dirname "$0")/.."

RATE=${RATE:-5000}
DURATION_S=${DURATION_S:-20}
CHANGE_EVERY_S=${CHANGE_EVERY_S:-2}
OUT=target/bench-topology
mkdir -p "$OUT"

PROFILE=${PROFILE:-release}
cargo build --profile "$PROFILE" -q -p surge-broker -p surge-loadgen
if [ "$PROFILE" = dev ]; then SURGE=target/debug/surge; else SURGE=target/$PROFILE/surge; fi
DATA=$(mktemp -d)
SURGE_LOG=${SURGE_LOG:-info} "$SURGE" serve --data-dir "$DATA" --listen 127.0.0.1:0 \
  --http-listen off --set autoscaler.enabled=false >"$OUT/serve.out" 2>"$OUT/serve.log" &
BROKER_PID=$!
trap 'kill "$BROKER_PID" 2>/dev/null || true; wait "$BROKER_PID" 2>/dev/null || true; rm -rf "$DATA"' EXIT
for _ in $(seq 100); do
  grep -q "surge listening on" "$OUT/serve.out" && break
  sleep 0.1
done
export SURGE_BROKER
SURGE_BROKER=$(sed -n 's/^surge listening on //p' "$OUT/serve.out")

loadgen() { # name
  # Start with the disk settled, so earlier writes' writeback (a build, the
  # previous run) does not land under this run's fdatasyncs.
  sync
  "$SURGE" loadgen --create-stream --stream "$1" --shards 4 --producers 2 \
    --rate "$RATE" --duration "${DURATION_S}s" --warmup 2s --event-size 1KiB \
    --keys 10000 --quiet --json "$OUT/$1.json"
}

# One change every CHANGE_EVERY_S: split the first open shard, merge the
# two halves back, isolate the event type `hot` (loadgen sends no type
# header, so its shards stay empty; the default shards are succeeded all the
# same), fold it back, and so on. Prints took_us per change.
changes() { # stream
  local end=$((SECONDS + DURATION_S + 2))
  sleep 3
  while ((SECONDS < end)); do
    local open first second
    first=$("$SURGE" stream describe "$1" | awk '$4 == "open" {print $1}' | head -1)
    "$SURGE" shard split "$1" "$first" | sed -n 's/.*, \([0-9]*\) us)$/split \1/p'
    sleep "$CHANGE_EVERY_S"
    open=$("$SURGE" stream describe "$1" | awk '$4 == "open" {print $1}' | sort -n | tail -2)
    first=$(echo "$open" | sed -n 1p)
    second=$(echo "$open" | sed -n 2p)
    "$SURGE" shard merge "$1" "$first" "$second" | sed -n 's/.*, \([0-9]*\) us)$/merge \1/p'
    sleep "$CHANGE_EVERY_S"
    "$SURGE" shard isolate "$1" hot --shards 2 | sed -n 's/.*, \([0-9]*\) us)$/isolate \1/p'
    sleep "$CHANGE_EVERY_S"
    "$SURGE" shard fold "$1" hot | sed -n 's/.*, \([0-9]*\) us)$/fold \1/p'
    sleep "$CHANGE_EVERY_S"
  done
}

loadgen steady
changes changing >"$OUT/changes.txt" &
CHANGER=$!
loadgen changing
wait "$CHANGER"

python3 - "$OUT" "$RATE" "$DURATION_S" "$CHANGE_EVERY_S" <<'PY'
import json, statistics, subprocess, sys, pathlib, re, datetime
out, rate, duration, every = sys.argv[1], sys.argv[2], sys.argv[3], sys.argv[4]
def load(name):
    return json.load(open(f"{out}/{name}.json"))
steady, changing = load("steady"), load("changing")
took = {"split": [], "merge": [], "isolate": [], "fold": []}
for line in open(f"{out}/changes.txt"):
    kind, us = line.split()
    took[kind].append(int(us))
def row(name, report):
    p = report["produce_latency"]
    c = report["counts"]
    return (f"| {name} | {report['throughput']['events_per_s']:.0f} | {p['p50_us']} | {p['p99_us']} "
            f"| {p['p999_us']} | {p['max_us']} | {c.get('errors', 0)} | {c.get('timeouts', 0)} |")
def took_row(kind):
    values = sorted(took[kind])
    if not values:
        return f"| {kind} | 0 | - | - |"
    return f"| {kind} | {len(values)} | {statistics.median(values)/1000:.1f} | {values[-1]/1000:.1f} |"
machine = steady["machine"]
sha = steady["git_sha"][:12]
ratio = changing["produce_latency"]["p999_us"] / max(1, steady["produce_latency"]["p999_us"])
lines = [
    "<!-- topology:begin -->",
    f"Measured {datetime.date.today()} at {sha} on {machine['cpus']} x {machine['cpu_model']}, "
    f"kernel {machine['kernel']}, with `benches/topology.sh` (RATE={rate}, DURATION_S={duration}, "
    f"CHANGE_EVERY_S={every}): 1 KiB events, 2 producers, 4 shards, durability `fsync`, "
    "broker and load generator on this machine.",
    "",
    "Time for a change to take effect inside the broker (parents sealed, successors taken from the pool, journal record fdatasynced, new epoch published); "
    "isolate and fold seal and succeed all 4 default shards:",
    "",
    "| change | count | median ms | max ms |",
    "|---|---|---|---|",
    took_row("split"),
    took_row("merge"),
    took_row("isolate"),
    took_row("fold"),
    "",
    f"Producer latency (ack after fsync, from the intended send time) at {rate} events/s:",
    "",
    "| run | events/s | p50 us | p99 us | p99.9 us | max us | errors | timeouts |",
    "|---|---|---|---|---|---|---|---|",
    row("steady", steady),
    row(f"a change every {every} s", changing),
    "",
    f"p99.9 with changes / steady: {ratio:.2f}.",
    "<!-- topology:end -->",
]
path = pathlib.Path("BENCHMARKS.md")
text = path.read_text()
block = "\n".join(lines)
if "<!-- topology:begin -->" in text:
    text = re.sub(r"<!-- topology:begin -->.*?<!-- topology:end -->", block, text, flags=re.S)
else:
    text += "\n## Live topology changes\n\n" + block + "\n"
path.write_text(text)
print(block)
PY
