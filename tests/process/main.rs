//! The tests that observe the whole process: how much heap the patched gossipsub and Noise give
//! back after a burst (a counting `#[global_allocator]`, which applies to every test of this
//! binary), and which thread the patched futures-timer uses (a thread, once started, stays for
//! the life of the process). Kept apart from the other binaries so that nothing else allocates
//! or starts threads beside them, and run one at a time (`support::counting_alloc::alone`).

// The shared harness (`tests/support/`), the parts this binary uses. An inline module with a
// `path` is the directory its `mod` items are read from: `tests/support/` has no `main.rs`, so
// cargo does not build it as a test binary of its own.
#[path = "../support"]
mod support {
    pub mod counting_alloc;
    pub mod memory_swarm;
}

mod gossip_memory;
mod noise_memory;
mod preauth_memory;
mod timer;
