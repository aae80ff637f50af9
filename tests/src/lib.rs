//! The harness for end-to-end tests: starts the real `surge` binary on
//! `127.0.0.1:0` (binary protocol and HTTP API) in a temporary data
//! directory, learns its ports from the lines it prints, and stops it
//! gracefully (SIGTERM) or abruptly (SIGKILL). The autoscaler runs in dry
//! mode unless a test turns it on (`--set autoscaler.enabled=true`), so it
//! never reshapes a stream a test reshapes by hand.
//! Also a raw frame client for tests that speak the wire protocol by hand.
//!
//! The binary is found next to the test executable's target directory
//! (`cargo test --workspace` builds it), or at `$SURGE_BIN`.

pub mod raw;

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// How long a broker may take to print its listening line.
const START_TIMEOUT: Duration = Duration::from_secs(30);

/// Path of the `surge` binary under test.
pub fn surge_bin() -> PathBuf {
    if let Some(path) = std::env::var_os("SURGE_BIN") {
        return PathBuf::from(path);
    }
    let exe = std::env::current_exe().expect("test executable path");
    // target/<profile>/deps/<test> -> target/<profile>/surge
    let profile_dir = exe
        .parent()
        .and_then(Path::parent)
        .expect("test executable lives in target/<profile>/deps");
    let bin = profile_dir.join("surge");
    assert!(
        bin.exists(),
        "{} not found: build it with `cargo build -p surge-broker` or run `cargo test --workspace`",
        bin.display()
    );
    bin
}

/// A running broker process and its data directory.
#[derive(Debug)]
pub struct BrokerProcess {
    child: Option<Child>,
    pub addr: String,
    /// The HTTP API's address; `None` when a test turned it off.
    pub http_addr: Option<String>,
    pub data_dir: PathBuf,
    extra_args: Vec<String>,
    /// Extra environment for the broker process (failpoints, say).
    env: Vec<(String, String)>,
    /// The size of the private tmpfs the data directory is mounted on, for
    /// a broker that must run out of disk (`start_on_tmpfs`).
    tmpfs: Option<String>,
}

impl BrokerProcess {
    /// Starts a broker on a fresh temporary data directory, which lives as
    /// long as `dir`.
    pub fn start(dir: &tempfile::TempDir, extra_args: &[&str]) -> BrokerProcess {
        Self::start_in(dir.path().join("data"), extra_args)
    }

    pub fn start_in(data_dir: PathBuf, extra_args: &[&str]) -> BrokerProcess {
        Self::start_with_env(data_dir, extra_args, &[])
    }

    /// Starts a broker with extra environment variables.
    pub fn start_with_env(
        data_dir: PathBuf,
        extra_args: &[&str],
        env: &[(&str, &str)],
    ) -> BrokerProcess {
        let extra_args: Vec<String> = extra_args.iter().map(|arg| arg.to_string()).collect();
        let env: Vec<(String, String)> = env
            .iter()
            .map(|(name, value)| (name.to_string(), value.to_string()))
            .collect();
        let (child, addr, http_addr) = spawn(&data_dir, &extra_args, &env, None);
        BrokerProcess {
            child: Some(child),
            addr,
            http_addr,
            data_dir,
            extra_args,
            env,
            tmpfs: None,
        }
    }

    /// Starts a broker whose data directory is a tmpfs of `size` (`mount`'s
    /// syntax, "32m"), mounted in a mount namespace of its own (`unshare`,
    /// util-linux; unprivileged where user namespaces are allowed), so the
    /// broker can fill its disk without touching the machine's. The data
    /// lives as long as the process: no `restart`.
    pub fn start_on_tmpfs(dir: &tempfile::TempDir, size: &str) -> BrokerProcess {
        let data_dir = dir.path().join("data");
        std::fs::create_dir_all(&data_dir).expect("the tmpfs mount point");
        let (child, addr, http_addr) = spawn(&data_dir, &[], &[], Some(size));
        BrokerProcess {
            child: Some(child),
            addr,
            http_addr,
            data_dir,
            extra_args: Vec::new(),
            env: Vec::new(),
            tmpfs: Some(size.to_owned()),
        }
    }

    /// Replaces the extra environment used by the next `restart`.
    pub fn set_env(&mut self, env: &[(&str, &str)]) {
        self.env = env
            .iter()
            .map(|(name, value)| (name.to_string(), value.to_string()))
            .collect();
    }

    /// Waits for the process to exit on its own (a failpoint, say) and
    /// returns whether it died of a signal rather than exiting.
    pub fn wait_for_crash(&mut self, within: Duration) -> bool {
        let Some(child) = self.child.as_mut() else {
            return false;
        };
        let deadline = Instant::now() + within;
        while Instant::now() < deadline {
            if let Ok(Some(status)) = child.try_wait() {
                self.child = None;
                return status.code().is_none();
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        false
    }

    /// SIGKILL: no chance to sync or clean up, like a power cut for the
    /// process (the page cache survives, which `fsync` durability does not
    /// rely on).
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            child.kill().ok();
            child.wait().ok();
        }
    }

    /// SIGTERM and wait; returns the exit status code.
    pub fn terminate(&mut self) -> Option<i32> {
        let mut child = self.child.take()?;
        let pid = libc::pid_t::try_from(child.id()).expect("pid fits pid_t");
        signal(pid, libc::SIGTERM);
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            if let Ok(Some(status)) = child.try_wait() {
                return status.code();
            }
            if Instant::now() > deadline {
                child.kill().ok();
                child.wait().ok();
                return None;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Starts the broker again on the same data directory (new port).
    pub fn restart(&mut self) {
        assert!(
            self.tmpfs.is_none(),
            "a broker on a private tmpfs loses its data when it stops"
        );
        self.kill();
        let (child, addr, http_addr) = spawn(&self.data_dir, &self.extra_args, &self.env, None);
        self.child = Some(child);
        self.addr = addr;
        self.http_addr = http_addr;
    }

    pub fn client_config(&self) -> surge_client::ClientConfig {
        surge_client::ClientConfig {
            addr: self.addr.clone(),
            client_id: "e2e".into(),
            ..surge_client::ClientConfig::default()
        }
    }

    pub async fn client(&self) -> surge_client::Client {
        surge_client::Client::connect(self.client_config())
            .await
            .expect("connect to the test broker")
    }

    /// Sends one request to the HTTP API; panics when it is off or down.
    pub async fn http(
        &self,
        method: &str,
        path: &str,
        json_body: Option<&str>,
    ) -> surge_broker::http::client::HttpResponse {
        let addr = self.http_addr.as_deref().expect("the HTTP API is on");
        surge_broker::http::client::request(addr, method, path, json_body.map(str::to_owned))
            .await
            .unwrap_or_else(|err| panic!("{method} {path}: {err}"))
    }

    /// Runs a `surge` client command against this broker.
    pub fn cli(&self, args: &[&str], stdin: Option<&str>) -> std::process::Output {
        let mut command = Command::new(surge_bin());
        command
            .args(args)
            .env("SURGE_BROKER", &self.addr)
            .env("SURGE_HTTP", self.http_addr.as_deref().unwrap_or("off"))
            .stdin(if stdin.is_some() {
                Stdio::piped()
            } else {
                Stdio::null()
            })
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let mut child = command.spawn().expect("spawn surge cli");
        if let Some(input) = stdin {
            use std::io::Write;
            let mut pipe = child.stdin.take().expect("piped stdin");
            pipe.write_all(input.as_bytes()).expect("write cli stdin");
        }
        child.wait_with_output().expect("surge cli output")
    }
}

fn signal(pid: libc::pid_t, sig: libc::c_int) {
    #[allow(unsafe_code)]
    // SAFETY: kill(2) has no memory-safety preconditions; `pid` is a child
    // this process spawned and has not reaped.
    unsafe {
        libc::kill(pid, sig);
    }
}

impl Drop for BrokerProcess {
    fn drop(&mut self) {
        self.kill();
    }
}

/// What the broker prints on stdout before it serves.
const LISTENING: &str = "surge listening on ";
const HTTP_LISTENING: &str = "surge http listening on ";

/// `sh -c` script for `start_on_tmpfs`: `$0` is the size, `$1` the mount
/// point, the rest the broker's command line.
const MOUNT_THEN_EXEC: &str = r#"mount -t tmpfs -o size="$0" tmpfs "$1" && shift && exec "$@""#;

fn spawn(
    data_dir: &Path,
    extra_args: &[String],
    env: &[(String, String)],
    tmpfs: Option<&str>,
) -> (Child, String, Option<String>) {
    let mut command = match tmpfs {
        None => Command::new(surge_bin()),
        Some(size) => {
            let mut command = Command::new("unshare");
            command
                .args(["--user", "--map-root-user", "--mount", "sh", "-c"])
                .args([MOUNT_THEN_EXEC, size])
                .arg(data_dir)
                .arg(surge_bin());
            command
        }
    };
    let mut child = command
        .arg("serve")
        .arg("--data-dir")
        .arg(data_dir)
        .arg("--listen")
        .arg("127.0.0.1:0")
        // Before the test's own arguments, so a later --set overrides them.
        .args(["--set", "http_listen=127.0.0.1:0"])
        .args(["--set", "autoscaler.enabled=false"])
        .args(extra_args)
        .env(
            "SURGE_LOG",
            std::env::var("SURGE_TEST_LOG").unwrap_or_else(|_| "warn".into()),
        )
        .envs(env.iter().map(|(name, value)| (name, value)))
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("spawn surge serve");
    let stdout = child.stdout.take().expect("piped stdout");
    let (sender, receiver) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let mut lines = BufReader::new(stdout).lines();
        // The HTTP line, when there is one, comes before the ready line.
        let mut http = None;
        while let Some(Ok(line)) = lines.next() {
            if let Some(addr) = line.strip_prefix(HTTP_LISTENING) {
                http = Some(addr.trim().to_owned());
            } else if let Some(addr) = line.strip_prefix(LISTENING) {
                sender.send((addr.trim().to_owned(), http.clone())).ok();
            }
        }
    });
    match receiver.recv_timeout(START_TIMEOUT) {
        Ok((addr, http)) => (child, addr, http),
        Err(_) => {
            child.kill().ok();
            let status = child.wait().ok();
            panic!("surge did not start within {START_TIMEOUT:?} (exit: {status:?})");
        }
    }
}
