//! End-to-end tests against the real `surge` binary, one binary for all
//! scenarios (each module is one concern).

mod autoscale;
mod bad_input;
mod cli;
mod corruption;
mod crash;
mod disk_full;
mod forwarding;
mod groups;
mod http;
mod isolation;
mod limits;
mod routing;
mod shutdown;
mod support;
mod topology;
mod write_mode;
