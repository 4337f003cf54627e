//! The patched futures-timer (vendor/futures-timer): inside a Tokio runtime a `Delay` is a Tokio
//! timer, so libp2p's per-message timeouts never wake the global timer thread; outside a
//! runtime it is upstream's timer thread. One test, run alone in the whole-process binary
//! (`counting_alloc::alone`), because the thread, once started, stays for the life of the
//! process: no other test may start it first.

use std::time::{Duration, Instant};

use futures_timer::Delay;

use crate::support::counting_alloc::alone;

fn timer_thread_running() -> bool {
    std::fs::read_dir("/proc/self/task")
        .unwrap()
        .filter_map(|t| std::fs::read_to_string(t.ok()?.path().join("comm")).ok())
        .any(|name| name.trim() == "futures-timer")
}

#[test]
fn delays_use_tokio_inside_a_runtime_and_the_timer_thread_outside() {
    let _alone = alone();
    assert!(!timer_thread_running());
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let t = Instant::now();
        Delay::new(Duration::from_millis(30)).await;
        assert!(t.elapsed() >= Duration::from_millis(30));

        // reset moves the deadline, also of a delay that already fired.
        let mut d = Delay::new(Duration::from_millis(5));
        (&mut d).await;
        let t = Instant::now();
        d.reset(Duration::from_millis(30));
        d.await;
        assert!(t.elapsed() >= Duration::from_millis(30));

        // Many created and dropped unpolled, as gossipsub does with its queue timeouts.
        for _ in 0..10_000 {
            drop(Delay::new(Duration::from_secs(60)));
        }
    });
    assert!(
        !timer_thread_running(),
        "a Delay inside the runtime started the futures-timer thread"
    );

    // Outside any runtime: upstream's implementation.
    let t = Instant::now();
    futures::executor::block_on(Delay::new(Duration::from_millis(20)));
    assert!(t.elapsed() >= Duration::from_millis(20));
    assert!(timer_thread_running());
}
