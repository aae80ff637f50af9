//! Failpoints: named places where the broker can be made to crash on
//! purpose (`SURGE_FAILPOINTS=change.sealed,change.committed`), so tests can
//! kill it between the phases of an operation instead of hoping a random
//! kill lands there. Unset, a failpoint is one cached lookup.

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
