//! Failpoints: named places where the broker can be made to crash, to
//! dawdle, to stall, or to fail once, on purpose (`SURGE_FAILPOINTS=change.sealed,forward.piece`), so
//! tests can kill it between the phases of an operation, or widen a race
//! window, instead of hoping a random timing lands there. Unset, a
//! failpoint is one cached lookup.

use std::sync::OnceLock;

fn armed() -> &'static [String] {
    static ARMED: OnceLock<Vec<String>> = OnceLock::new();
    ARMED.get_or_init(|| {
        std::env::var("SURGE_FAILPOINTS")
            .map(|list| list.split(',').map(|name| name.trim().to_owned()).collect())
            .unwrap_or_default()
    })
}

/// Aborts the process, like a power cut for it, if `name` is armed.
pub fn hit(name: &str) {
    if armed().iter().any(|armed| armed == name) {
        eprintln!("failpoint {name}: aborting");
        std::process::abort();
    }
}

/// How long `delay` waits when armed.
pub const DELAY: std::time::Duration = std::time::Duration::from_millis(500);

/// Waits `DELAY` if `name` is armed, to hold a race window open.
pub async fn delay(name: &str) {
    if armed().iter().any(|armed| armed == name) {
        tokio::time::sleep(DELAY).await;
    }
}

/// How long `stall` holds its thread when armed.
pub const STALL: std::time::Duration = std::time::Duration::from_secs(2);

/// Holds the calling thread for `STALL` if `name` is armed: a disk that
/// takes seconds over one operation.
pub fn stall(name: &str) {
    if armed().iter().any(|armed| armed == name) {
        std::thread::sleep(STALL);
    }
}

/// Whether `name` is armed and has not fired yet in this process: for an
/// operation that must fail once, as a transient fault would, and then
/// succeed when tried again.
pub fn once(name: &str) -> bool {
    static FIRED: std::sync::Mutex<Vec<String>> = std::sync::Mutex::new(Vec::new());
    if !armed().iter().any(|armed| armed == name) {
        return false;
    }
    let mut fired = FIRED
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner());
    if fired.iter().any(|fired| fired == name) {
        return false;
    }
    fired.push(name.to_owned());
    true
}
