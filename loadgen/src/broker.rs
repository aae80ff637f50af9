//! `--spawn-broker`: a `surge serve` child on `127.0.0.1:0` with a fresh
//! temporary data directory, its address read from the line it prints.
//! The binary is `$SURGE_BIN`, else `surge` next to this executable (or one
//! directory up, where test executables live in `target/<profile>/deps`).
//! Dropping the handle kills the child and removes the directory.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use crate::error::LoadgenError;

/// How long the broker may take to print its listening line.
const START_TIMEOUT: Duration = Duration::from_secs(30);
const LISTENING_PREFIX: &str = "surge listening on ";

/// Where the `surge` binary is.
pub fn locate_surge() -> Result<PathBuf, LoadgenError> {
    if let Some(path) = std::env::var_os("SURGE_BIN") {
        return Ok(PathBuf::from(path));
    }
    let exe = std::env::current_exe()
        .map_err(|error| LoadgenError::Broker(format!("own executable path: {error}")))?;
    let candidates = exe
        .ancestors()
        .skip(1)
        .take(2)
        .map(|dir| dir.join("surge"))
        .collect::<Vec<_>>();
    candidates
        .iter()
        .find(|path| path.is_file())
        .cloned()
        .ok_or_else(|| {
            LoadgenError::Broker(format!(
                "no surge binary at {candidates:?}: build it (cargo build -p surge-broker) or set SURGE_BIN"
            ))
        })
}

/// A running `surge serve` child.
#[derive(Debug)]
pub struct SpawnedBroker {
    child: Child,
    pub addr: String,
    data_dir: tempfile::TempDir,
}

impl SpawnedBroker {
    pub fn start(surge_bin: &Path, extra_args: &[String]) -> Result<SpawnedBroker, LoadgenError> {
        let data_dir = tempfile::Builder::new()
            .prefix("surge-loadgen-")
            .tempdir()
            .map_err(|error| LoadgenError::io(std::env::temp_dir(), error))?;
        let mut child = Command::new(surge_bin)
            .arg("serve")
            .arg("--data-dir")
            .arg(data_dir.path())
            .args(["--listen", "127.0.0.1:0"])
            // A fixed topology: the autoscaler would split mid-run and make
            // runs incomparable (and port 9471 may be taken). `extra_args`
            // can turn either back on.
            .args(["--http-listen", "off", "--set", "autoscaler.enabled=false"])
            .args(extra_args)
            .env(
                "SURGE_LOG",
                std::env::var("SURGE_LOG").unwrap_or_else(|_| "warn".into()),
            )
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .map_err(|error| LoadgenError::io(surge_bin, error))?;
        let stdout = child.stdout.take().expect("stdout is piped");
        let (found, addr) = std::sync::mpsc::channel();
        // Keeps reading after the address so the child never blocks on a full pipe.
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                if let Some(addr) = line.strip_prefix(LISTENING_PREFIX) {
                    let _ = found.send(addr.trim().to_owned());
                }
            }
        });
        match addr.recv_timeout(START_TIMEOUT) {
            Ok(addr) => Ok(SpawnedBroker {
                child,
                addr,
                data_dir,
            }),
            Err(_) => {
                let _ = child.kill();
                let status = child.wait().ok();
                Err(LoadgenError::Broker(format!(
                    "{} printed no address within {START_TIMEOUT:?} (exit: {status:?})",
                    surge_bin.display()
                )))
            }
        }
    }

    pub fn data_dir(&self) -> &Path {
        self.data_dir.path()
    }
}

impl Drop for SpawnedBroker {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
