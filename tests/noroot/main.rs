//! The integration tests that need no root: the CLI and the daemon on 127.0.0.1, CAP output,
//! the authentication gate and replay refusal against a hand-made libp2p peer, the golden and
//! Wycheproof vectors, and gossip between in-process nodes. One test binary, so that libp2p and
//! the crate are linked once for all of them (`cargo test --test noroot`); each former test file
//! is a module, its tests named `module::test`.
//!
//! The tests run in parallel (libtest's threads): each works in its own temporary directory and
//! lets the system pick its ports, and none changes the process's environment.

// The shared harness (`tests/support/`), the parts this binary uses. An inline module with a
// `path` is the directory its `mod` items are read from: `tests/support/` has no `main.rs`, so
// cargo does not build it as a test binary of its own.
#[path = "../support"]
mod support {
    pub mod common;
    pub mod loopback;
    pub mod memory_swarm;
}

mod cap;
mod cli;
mod directed;
mod gate;
mod gossip_ihave;
mod gossip_plane;
mod operate;
mod replay;
mod vectors;
mod wycheproof;
