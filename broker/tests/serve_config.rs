//! `surge serve` configuration errors and choices, run as a process: bad
//! settings fail fast with a message naming the key, and the write path can
//! be forced. (Also makes `cargo test --workspace` build the `surge` binary
//! that the end-to-end tests in `tests/` start.)

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};

const SURGE: &str = env!("CARGO_BIN_EXE_surge");

fn serve_fails(args: &[&str], env: &[(&str, &str)]) -> String {
    let dir = tempfile::tempdir().unwrap();
    let output = Command::new(SURGE)
        .arg("serve")
        .arg("--data-dir")
        .arg(dir.path())
        .args(["--listen", "127.0.0.1:0", "--http-listen", "127.0.0.1:0"])
        .args(args)
        .envs(env.iter().copied())
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert!(!output.status.success(), "serve {args:?} should fail");
    String::from_utf8_lossy(&output.stderr).into_owned()
}

#[test]
fn invalid_settings_fail_with_the_key_named() {
    let stderr = serve_fails(&["--io-backend", "floppy"], &[]);
    assert!(stderr.contains("io_backend"), "{stderr}");
    let stderr = serve_fails(&["--set", "no_such_setting=1"], &[]);
    assert!(stderr.contains("no_such_setting"), "{stderr}");
    let stderr = serve_fails(&[], &[("SURGE_MAX_CONNECTIONS", "0")]);
    assert!(stderr.contains("max_connections"), "{stderr}");
    let stderr = serve_fails(&["--set", "bare-word"], &[]);
    assert!(stderr.contains("KEY=VALUE"), "{stderr}");
}

#[test]
fn unreadable_config_file_is_reported() {
    let stderr = serve_fails(&["--config", "/nonexistent/surge.toml"], &[]);
    assert!(stderr.contains("/nonexistent/surge.toml"), "{stderr}");
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("bad.toml");
    std::fs::write(&path, "listen = [unclosed").unwrap();
    let stderr = serve_fails(&["--config", path.to_str().unwrap()], &[]);
    assert!(stderr.contains("invalid TOML"), "{stderr}");
}

#[test]
fn a_second_broker_on_the_same_data_dir_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let mut first = Command::new(SURGE)
        .args([
            "serve",
            "--listen",
            "127.0.0.1:0",
            "--http-listen",
            "127.0.0.1:0",
            "--io-backend",
            "pwrite",
            "--data-dir",
        ])
        .arg(dir.path())
        .env("SURGE_LOG", "info")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(first.stdout.take().unwrap()).lines();
    let http = lines.next().unwrap().unwrap();
    assert!(
        http.starts_with("surge http listening on 127.0.0.1:"),
        "{http}"
    );
    let ready = lines.next().unwrap().unwrap();
    assert!(
        ready.starts_with("surge listening on 127.0.0.1:"),
        "{ready}"
    );
    let second = Command::new(SURGE)
        .args([
            "serve",
            "--listen",
            "127.0.0.1:0",
            "--http-listen",
            "off",
            "--data-dir",
        ])
        .arg(dir.path())
        .output()
        .unwrap();
    first.kill().unwrap();
    first.wait().unwrap();
    let mut log = String::new();
    std::io::Read::read_to_string(&mut first.stderr.take().unwrap(), &mut log).unwrap();
    assert!(!second.status.success());
    let stderr = String::from_utf8_lossy(&second.stderr);
    assert!(stderr.contains("in use by another broker"), "{stderr}");
    assert!(
        log.contains("pwrite"),
        "the forced write path is logged: {log}"
    );
}
