#!/usr/bin/env python3
"""Helper of benches/e2e.sh: reads fio, iperf3 and surge-loadgen JSON and
renders the end-to-end results table into BENCHMARKS.md.

Subcommands (all output on stdout unless stated):
  fio-bw FIO_JSON              sequential write bandwidth, MB/s (10^6 B/s)
  fio-sync FIO_JSON            fdatasync latency p50 p99 p99.9 in us
  iperf IPERF_JSON             loopback receive throughput, MB/s
  sockperf SOCKPERF_TXT        loopback round trip p50, p99, p99.9, µs
  rate LOADGEN_JSON FACTOR     FACTOR x acked events/s, rounded, at least 1
  render --manifest TSV --limits JSON --machine JSON [--profile MD]
         [--update FILE]
         writes the markdown section (with the perf profile summary MD
         under the targets, when given); with --update, replaces what lies
         between the e2e markers of FILE as well.

MB is 10^6 bytes everywhere, as in loadgen's reports.
"""

import json
import re
import sys

BEGIN = "<!-- e2e:begin -->"
END = "<!-- e2e:end -->"

# Issue 3's targets.
FSYNC_SHARE_MIN = 0.50
WRITE_SHARE_MIN = 0.25
WRITE_E2E_P99_US_MAX = 300
FSYNC_E2E_MARGIN_US = 500


def load(path):
    with open(path, encoding="utf-8") as handle:
        return json.load(handle)


def fio_bw_mb_s(path):
    job = load(path)["jobs"][0]
    return job["write"]["bw_bytes"] / 1e6


def fio_sync_us(path):
    percentiles = load(path)["jobs"][0]["sync"]["lat_ns"]["percentile"]
    return [percentiles[key] / 1e3 for key in ("50.000000", "99.000000", "99.900000")]


def iperf_mb_s(path):
    report = load(path)
    if "error" in report:
        raise SystemExit(f"iperf3: {report['error']}")
    return report["end"]["sum_received"]["bits_per_second"] / 8 / 1e6


def sockperf_rtt_us(path):
    """p50, p99 and p99.9 round trip from `sockperf under-load` output."""
    found = {}
    with open(path, encoding="utf-8") as handle:
        for line in handle:
            match = re.search(r"percentile (\d+\.\d+) =\s*([\d.]+)", line)
            if match:
                found[match.group(1)] = float(match.group(2))
    try:
        return [found[key] for key in ("50.000", "99.000", "99.900")]
    except KeyError as missing:
        raise SystemExit(f"{path}: no sockperf percentile {missing}") from None


def read_manifest(path):
    """Rows of label, kind, size, producers, durability, linger_ms, json path."""
    rows = []
    with open(path, encoding="utf-8") as handle:
        for line in handle:
            fields = line.rstrip("\n").split("\t")
            if len(fields) != 7:
                raise SystemExit(f"{path}: bad manifest line {line!r}")
            label, kind, size, producers, durability, linger, report = fields
            try:
                data = load(report)
            except (OSError, ValueError):
                data = None
            rows.append(
                {
                    "label": label,
                    "kind": kind,
                    "size": size,
                    "producers": int(producers),
                    "durability": durability,
                    "linger_ms": int(linger),
                    "report": data,
                }
            )
    return rows


def limit_for(row, limits):
    if row["durability"] == "fsync":
        return limits["fio_write_fdatasync_mb_s"]
    return limits["iperf3_loopback_mb_s"]


def fmt_us(value):
    return f"{value:,}"


def run_table(rows, limits):
    out = [
        "| run | size | prod | durability | rate asked | events/s | MB/s | of limit "
        "| ack p50 / p99 / p99.9 / max (µs) | e2e p99 (µs) | errors / timeouts / not sent |",
        "|---|---|---:|---|---:|---:|---:|---:|---|---:|---|",
    ]
    for row in rows:
        head = f"| {row['kind']} | {row['size']} | {row['producers']} | {row['durability']} "
        report = row["report"]
        if report is None:
            out.append(head + "| - | **run failed** (see its .txt log) | | | | | |")
            continue
        throughput = report["throughput"]
        target = throughput.get("target_events_per_s")
        asked = "closed loop" if target is None else f"{target:,.0f}/s"
        ack = report["produce_latency"]
        e2e = report["e2e_latency"]
        e2e_p99 = fmt_us(e2e["p99_us"]) if e2e["count"] else "-"
        counts = report["counts"]
        share = throughput["mb_per_s"] / limit_for(row, limits)
        out.append(
            head
            + f"| {asked} | {throughput['events_per_s']:,.0f} | {throughput['mb_per_s']:,.1f} "
            + f"| {share:.1%} "
            + f"| {fmt_us(ack['p50_us'])} / {fmt_us(ack['p99_us'])} / "
            + f"{fmt_us(ack['p999_us'])} / {fmt_us(ack['max_us'])} "
            + f"| {e2e_p99} "
            + f"| {counts['errors']} / {counts['timeouts']} / {counts['not_sent']} |"
        )
    return out


def best_max(rows, durability):
    """The fastest 1 KiB max-throughput run of this durability."""
    candidates = [
        row
        for row in rows
        if row["kind"] == "max"
        and row["size"] == "1KiB"
        and row["durability"] == durability
        and row["report"] is not None
    ]
    return max(candidates, key=lambda row: row["report"]["throughput"]["mb_per_s"], default=None)


def latency_row(rows, durability):
    for row in rows:
        if row["kind"] == "lat5k" and row["durability"] == durability and row["report"]:
            return row
    return None


def verdict(met):
    return "**met**" if met else "**missed**"


def target_lines(rows, limits):
    out = []
    fio = limits["fio_write_fdatasync_mb_s"]
    loopback = limits["iperf3_loopback_mb_s"]
    for durability, limit, share_min, limit_name in (
        ("fsync", fio, FSYNC_SHARE_MIN, "fio write+fdatasync"),
        ("write", loopback, WRITE_SHARE_MIN, "iperf3 loopback"),
    ):
        row = best_max(rows, durability)
        if row is None:
            out.append(f"- `{durability}` throughput ≥ {share_min:.0%} of {limit_name}: no run")
            continue
        mb_s = row["report"]["throughput"]["mb_per_s"]
        share = mb_s / limit
        out.append(
            f"- `{durability}` throughput, 1 KiB, ≥ {share_min:.0%} of {limit_name} "
            f"({limit:,.0f} MB/s, so ≥ {limit * share_min:,.0f} MB/s): "
            f"{verdict(share >= share_min)}, {mb_s:,.1f} MB/s = {share:.1%} "
            f"(the best 1 KiB `max` run: {row['producers']} producer(s))"
            + (
                f"; {mb_s / limits['fio_write_fdatasync_parallel_mb_s']:.0%} of fio over "
                f"{limits['fio_parallel_files']} files at once"
                f", {mb_s / limits['fio_write_fdatasync_sustained_mb_s']:.0%} of fio kept up "
                f"for a run's length"
                if durability == "fsync"
                else ""
            )
        )
    sync_p99 = limits["fdatasync_4k_us"][1]
    for durability, bound_us, bound_text in (
        ("write", WRITE_E2E_P99_US_MAX, f"< {WRITE_E2E_P99_US_MAX} µs"),
        (
            "fsync",
            sync_p99 + FSYNC_E2E_MARGIN_US,
            f"< fdatasync p99 + {FSYNC_E2E_MARGIN_US} µs = {sync_p99 + FSYNC_E2E_MARGIN_US:,.0f} µs",
        ),
    ):
        row = latency_row(rows, durability)
        if row is None or row["report"]["e2e_latency"]["count"] == 0:
            out.append(f"- `{durability}` e2e p99 at 5,000 events/s {bound_text}: no samples")
            continue
        p99 = row["report"]["e2e_latency"]["p99_us"]
        out.append(
            f"- `{durability}` e2e p99 at 5,000 events/s {bound_text}: "
            f"{verdict(p99 < bound_us)}, {p99:,} µs "
            f"(loopback round trip p99 at that rate: {limits['loopback_rtt_us'][1]:,.0f} µs)"
        )
    return out


def render(manifest, limits_path, machine_path, profile_path=None):
    rows = read_manifest(manifest)
    limits = load(limits_path)
    machine = load(machine_path)
    sync = limits["fdatasync_4k_us"]
    rtt = limits["loopback_rtt_us"]
    lines = [
        BEGIN,
        "<!-- Written by benches/e2e.sh; edits between these markers are overwritten. -->",
        "",
        f"Command: `{machine['command']}`, {machine['date']}, git `{machine['git_sha']}`.",
        "",
        "| | |",
        "|---|---|",
        f"| CPU | `nproc` = {machine['nproc']}, {machine['cpu_model']} |",
        f"| memory | {machine['memory']} |",
        f"| kernel | {machine['kernel']} |",
        f"| data dir filesystem | {machine['filesystem']} |",
        f"| load average (1, 5, 15 min) | {machine['load_start']} at the start, "
        f"{machine['load_end']} at the end (other work shares the machine) |",
        f"| broker | one `surge serve` on 127.0.0.1, io backend `{machine['io_backend']}` |",
        f"| per run | {machine['warmup_s']} s warmup + {machine['duration_s']} s measured, "
        "fresh stream of 4 shards, 1,024 uniform keys, batch 1 MiB |",
        "",
        "Limits, measured in the same run:",
        "",
        "| limit | tool | value |",
        "|---|---|---:|",
        f"| sequential write + fdatasync, 1 MiB writes | `{limits['fio_bw_cmd']}` "
        f"| {limits['fio_write_fdatasync_mb_s']:,.0f} MB/s |",
        f"| the same, {limits['fio_parallel_files']} files at once (one per shard; not the target's "
        f"limit) | `... --numjobs={limits['fio_parallel_files']} --group_reporting` "
        f"| {limits['fio_write_fdatasync_parallel_mb_s']:,.0f} MB/s |",
        f"| the same kept up for one run's length (not the target's limit) "
        f"| `fio {limits['fio_sustained_cmd'].removeprefix('fio ')}` "
        f"| {limits['fio_write_fdatasync_sustained_mb_s']:,.0f} MB/s |",
        f"| the same with O_DIRECT, no page cache (not the target's limit) "
        f"| `fio {limits['fio_direct_cmd'].removeprefix('fio ')}` "
        f"| {limits['fio_write_fdatasync_direct_mb_s']:,.0f} MB/s |",
        f"| fdatasync latency, 4 KiB writes, p50 / p99 / p99.9 | `{limits['fio_sync_cmd']}` "
        f"| {sync[0]:,.0f} / {sync[1]:,.0f} / {sync[2]:,.0f} µs |",
        f"| loopback TCP, one stream | `{limits['iperf_cmd']}` "
        f"| {limits['iperf3_loopback_mb_s']:,.0f} MB/s |",
        f"| loopback TCP round trip, 1 KiB at 5,000/s, p50 / p99 / p99.9 "
        f"(the floor under the latency targets) | `{limits['sockperf_cmd']}` "
        f"| {rtt[0]:,.0f} / {rtt[1]:,.0f} / {rtt[2]:,.0f} µs |",
        "",
        "Runs (`max`: closed loop, 4,096 events in flight per producer, linger 1 ms; "
        "`open50`: open loop at 50% of the `max` run above it, linger 1 ms; "
        "`lat5k`: open loop at 5,000 events/s with 1 consumer, linger 0 ms). "
        "MB/s counts event values only (no keys, headers or framing); "
        "\"of limit\" is against fio write+fdatasync for `fsync` and iperf3 "
        "loopback for `write`. Open-loop latencies are from the intended send "
        "time; closed-loop ones from the actual send.",
        "",
    ]
    lines += run_table(rows, limits)
    lines += ["", "Against issue 3's targets:", ""]
    lines += target_lines(rows, limits)
    if profile_path:
        with open(profile_path, encoding="utf-8") as handle:
            lines += ["", handle.read().rstrip("\n")]
    lines += ["", END]
    return "\n".join(lines) + "\n"


def update(path, section):
    with open(path, encoding="utf-8") as handle:
        text = handle.read()
    start = text.find(BEGIN)
    stop = text.find(END)
    if start < 0 or stop < start:
        raise SystemExit(f"{path}: no {BEGIN} ... {END} markers")
    text = text[:start] + section.rstrip("\n") + text[stop + len(END) :]
    with open(path, "w", encoding="utf-8") as handle:
        handle.write(text)


def main(argv):
    if len(argv) < 2:
        raise SystemExit(__doc__)
    command, args = argv[1], argv[2:]
    if command == "fio-bw":
        print(f"{fio_bw_mb_s(args[0]):.1f}")
    elif command == "fio-sync":
        print(" ".join(f"{value:.0f}" for value in fio_sync_us(args[0])))
    elif command == "iperf":
        print(f"{iperf_mb_s(args[0]):.1f}")
    elif command == "sockperf":
        print(" ".join(f"{value:.0f}" for value in sockperf_rtt_us(args[0])))
    elif command == "rate":
        events_per_s = load(args[0])["throughput"]["events_per_s"]
        print(max(1, round(events_per_s * float(args[1]))))
    elif command == "render":
        options = dict(zip(args[::2], args[1::2]))
        section = render(
            options["--manifest"],
            options["--limits"],
            options["--machine"],
            options.get("--profile"),
        )
        sys.stdout.write(section)
        if "--update" in options:
            update(options["--update"], section)
    else:
        raise SystemExit(__doc__)


if __name__ == "__main__":
    main(sys.argv)
