//! The integration tests that start real daemons in Linux network namespaces joined by bridges
//! (`support::netns`): delivery, discovery, relays and brokers across segments, key lifecycle,
//! voice, installation and the service under systemd, and the harness's own self-tests. One
//! test binary (`cargo test --test netns`); each former test file is a module, its tests named
//! `module::test`.
//!
//! They need root and iproute2 (some also ping, nft, espeak-ng, debootstrap, systemd-nspawn).
//! Without them each test prints why and returns, except when `CI` is set: then it fails, so a
//! CI run never skips them silently (`support::netns::require_netns`).
//!
//! Tests run in parallel: every namespace is named after this process's pid and a per-process
//! counter (`support::netns::Lan::new`), so no two tests share one, and each `Lan` tears its
//! namespaces down when dropped.

// The shared harness (`tests/support/`), the parts this binary uses. An inline module with a
// `path` is the directory its `mod` items are read from: `tests/support/` has no `main.rs`, so
// cargo does not build it as a test binary of its own.
#[path = "../support"]
mod support {
    pub mod common;
    pub mod field;
    pub mod netns;
}

mod adversary;
mod broker;
mod changes;
mod discovery;
mod emergency;
mod field;
mod floor;
mod install;
mod lifecycle;
mod mesh;
mod netns_harness;
mod plane;
mod receipts;
mod scale;
mod scenario;
mod segments;
mod systemd;
mod voice;
mod watchdog;
