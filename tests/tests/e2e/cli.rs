//! The README's CLI walkthrough, run for real: create, list, produce,
//! consume (from the beginning, by group with resume), describe, delete.

use surge_tests::BrokerProcess;

fn stdout(output: &std::process::Output) -> String {
    assert!(
        output.status.success(),
        "command failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8(output.stdout.clone()).expect("UTF-8 output")
}

#[test]
fn walkthrough() {
    let dir = tempfile::tempdir().unwrap();
    let broker = BrokerProcess::start(&dir, &[]);
    let created = broker.cli(&["stream", "create", "orders", "--shards", "3"], None);
    assert_eq!(stdout(&created).trim(), "created stream orders");

    let listed = stdout(&broker.cli(&["stream", "list"], None));
    assert!(
        listed
            .lines()
            .any(|line| line.starts_with("orders") && line.contains(" 3 ")),
        "{listed}"
    );

    let input = "alice:signed up\nbob:signed up\nalice:ordered tea\nalice:paid\n";
    let produced = broker.cli(
        &[
            "produce",
            "orders",
            "--key-separator",
            ":",
            "--type",
            "activity",
        ],
        Some(input),
    );
    assert!(
        produced.status.success(),
        "{}",
        String::from_utf8_lossy(&produced.stderr)
    );

    let all = stdout(&broker.cli(&["consume", "orders", "--verbose"], None));
    let lines: Vec<&str> = all.lines().collect();
    assert_eq!(lines.len(), 4, "{all}");
    let alice: Vec<&str> = lines
        .iter()
        .filter(|line| line.split('\t').nth(2) == Some("alice"))
        .map(|line| line.split('\t').nth(3).unwrap())
        .collect();
    assert_eq!(
        alice,
        vec!["signed up", "ordered tea", "paid"],
        "per-key order"
    );

    let first = stdout(&broker.cli(
        &[
            "consume",
            "orders",
            "--group",
            "billing",
            "--max-events",
            "3",
        ],
        None,
    ));
    assert_eq!(first.lines().count(), 3);
    let rest = stdout(&broker.cli(&["consume", "orders", "--group", "billing"], None));
    assert_eq!(
        rest.lines().count(),
        1,
        "the group resumes after its commit: {rest}"
    );
    let none = stdout(&broker.cli(&["consume", "orders", "--group", "billing"], None));
    assert_eq!(none.lines().count(), 0);
    // Bad arguments say what is wrong and print no event (`--max-events 0`
    // printed one).
    for (args, says) in [
        (["--max-events", "0"], "--max-events"),
        (["--group", "no spaces"], "group names are"),
    ] {
        let refused = broker.cli(&[&["consume", "orders"][..], &args[..]].concat(), None);
        let stderr = String::from_utf8_lossy(&refused.stderr);
        assert!(
            !refused.status.success() && stderr.contains(says),
            "{stderr}"
        );
        assert!(refused.stdout.is_empty(), "{args:?}");
    }

    let described = stdout(&broker.cli(&["stream", "describe", "orders"], None));
    assert!(described.contains("durability  fsync"), "{described}");
    let total_end: u64 = described
        .lines()
        .filter(|line| line.contains(" open "))
        .map(|line| {
            line.split_whitespace()
                .nth(5)
                .unwrap()
                .parse::<u64>()
                .unwrap()
        })
        .sum();
    assert_eq!(total_end, 4, "{described}");

    assert_eq!(
        stdout(&broker.cli(&["stream", "delete", "orders"], None)).trim(),
        "deleted stream orders"
    );
    let missing = broker.cli(&["stream", "describe", "orders"], None);
    assert!(!missing.status.success());
    assert!(String::from_utf8_lossy(&missing.stderr).contains("unknown stream"));
}

#[test]
fn unreachable_broker_is_a_clear_error() {
    let output = std::process::Command::new(surge_tests::surge_bin())
        .args(["stream", "list", "--broker", "127.0.0.1:1"])
        .output()
        .unwrap();
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("cannot reach a broker at 127.0.0.1:1"),
        "{stderr}"
    );
}

#[test]
fn loadgen_runs_through_the_surge_command() {
    let dir = tempfile::tempdir().unwrap();
    let broker = BrokerProcess::start(&dir, &[]);
    let args = [
        "loadgen",
        "--create-stream",
        "--stream",
        "bench",
        "--shards",
        "2",
        "--rate",
        "500",
        "--duration",
        "1s",
        "--warmup",
        "0s",
        "--quiet",
    ];
    let output = broker.cli(&args, None);
    let out = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "{out}\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(out.contains("fsync"), "the report states durability: {out}");
}
