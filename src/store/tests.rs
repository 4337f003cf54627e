use super::*;

fn env(sender: u32, seq: u64) -> StoredEnvelope {
    StoredEnvelope {
        sender,
        seq,
        channel: 1,
        received_at_us: seq,
        bytes: vec![sender as u8; 10],
    }
}

#[test]
fn survives_reopen_and_tracks_own_seq() {
    let dir = tempfile::tempdir().unwrap();
    {
        let mut s = Store::open(dir.path()).unwrap();
        assert_eq!(s.own_last_seq().unwrap(), 0);
        s.put(&[env(1, 5), env(2, 9), env(1, 7)], 1).unwrap();
        s.put(&[env(1, 6), env(1, 6)], 1).unwrap();
    }
    let s = Store::open(dir.path()).unwrap();
    assert_eq!(s.own_last_seq().unwrap(), 7);
    assert_eq!(s.keys().unwrap(), vec![(1, 5), (1, 6), (1, 7), (2, 9)]);
    assert_eq!(s.index().len(), 4);
    assert_eq!(s.bytes(), 40, "a duplicate is stored once");
    assert_eq!(s.envelopes(7, 10).unwrap().len(), 2);
    assert_eq!(s.get(&[(2, 9), (3, 3)], 1000).unwrap().len(), 1);
}

#[test]
fn retention_by_age_then_size_raises_floors() {
    let dir = tempfile::tempdir().unwrap();
    let mut s = Store::open(dir.path()).unwrap();
    for i in 1..=10 {
        s.put(&[env(1, i * 100)], 9).unwrap();
    }
    // Age: everything received before 350 goes (100, 200, 300).
    let p = s
        .prune(
            1350,
            Retention {
                max_age_us: 1000,
                max_bytes: 1_000_000,
            },
        )
        .unwrap();
    assert_eq!(
        p,
        Pruned {
            removed: 3,
            examined: 4,
            floors: vec![(1, 300)]
        }
    );
    // Size: 70 bytes held, keep at most 40: the three oldest go.
    let p = s
        .prune(
            1350,
            Retention {
                max_age_us: 1000,
                max_bytes: 40,
            },
        )
        .unwrap();
    assert_eq!(p.removed, 3);
    assert_eq!(s.bytes(), 40);
    assert_eq!(s.keys().unwrap().first(), Some(&(1, 700)));
    drop(s);
    let s = Store::open(dir.path()).unwrap();
    assert_eq!(s.floors().unwrap(), vec![(1, 600)]);
    assert_eq!(s.bytes(), 40);
    assert_eq!(s.index().len(), 4);
}

#[test]
fn receipts_have_their_own_budget_and_raise_no_floor() {
    let dir = tempfile::tempdir().unwrap();
    let mut s = Store::open(dir.path()).unwrap();
    let receipt = |sender: u32, seq: u64| StoredEnvelope {
        channel: crate::receipt::receipt_channel(1),
        ..env(sender, seq)
    };
    // Four alerts (40 bytes), then twenty receipts (200 bytes) from another member.
    for i in 1..=4 {
        s.put(&[env(1, i * 100)], 9).unwrap();
    }
    for i in 1..=20 {
        s.put(&[receipt(2, 1_000 + i)], 9).unwrap();
    }
    assert_eq!((s.bytes(), s.receipt_bytes()), (240, 200));
    // 40 bytes of alerts kept, so 10 of receipts: every alert stays, the oldest receipts go,
    // and no floor rises for them.
    let r = Retention {
        max_age_us: 1_000_000,
        max_bytes: 40,
    };
    assert_eq!(r.receipt_bytes(), 10);
    let p = s.prune(2_000, r).unwrap();
    assert_eq!(p.removed, 19);
    // Each kind walked in its own time index: one alert row (within budget, so the walk
    // stops), the nineteen receipts removed and the one kept; no alert looked at for them.
    assert_eq!(p.examined, 1 + 20);
    assert!(p.floors.is_empty(), "{p:?}");
    assert_eq!((s.bytes(), s.receipt_bytes()), (50, 10));
    let keys = s.keys().unwrap();
    assert_eq!(&keys[..4], &[(1, 100), (1, 200), (1, 300), (1, 400)]);
    assert_eq!(keys[4], (2, 1_020));
    drop(s);
    let s = Store::open(dir.path()).unwrap();
    assert_eq!((s.bytes(), s.receipt_bytes()), (50, 10));
    assert!(s.floors().unwrap().is_empty());
}

#[tokio::test]
async fn cover_seq_waits_for_a_lease_only_when_none_covers_the_seq() {
    let dir = tempfile::tempdir().unwrap();
    let h = StoreHandle::spawn(Store::open(dir.path()).unwrap(), 3);
    assert_eq!(h.lease(), 0);
    // No lease: cover_seq waits for one that reaches LEASE_AHEAD_US beyond the seq.
    h.cover_seq(1_000).await.unwrap();
    assert_eq!(h.lease(), 1_000 + LEASE_AHEAD_US);
    // Well inside the lease: nothing is written.
    let commits = h.commits();
    h.cover_seq(2_000).await.unwrap();
    h.flush().await.unwrap();
    assert_eq!(h.lease(), 1_000 + LEASE_AHEAD_US);
    // Less than half left: covered at once, and a longer lease is written behind it.
    let seq = 1_000 + LEASE_AHEAD_US / 2 + 1;
    h.cover_seq(seq).await.unwrap();
    h.flush().await.unwrap();
    assert_eq!(h.lease(), seq + LEASE_AHEAD_US);
    assert_eq!(h.commits(), commits, "a lease is not an envelope commit");
    // A lower request never lowers it.
    drop(h);
    let mut s = reopen(dir.path());
    assert_eq!(s.seq_lease().unwrap(), seq + LEASE_AHEAD_US);
    assert_eq!(s.raise_seq_lease(5).unwrap(), seq + LEASE_AHEAD_US);
    assert_eq!(s.seq_lease().unwrap(), seq + LEASE_AHEAD_US);
    assert_eq!(
        s.own_last_seq().unwrap(),
        0,
        "the lease is not the log's last seq"
    );
}

#[tokio::test]
async fn alerts_sealed_while_one_waits_for_a_lease_share_its_commit() {
    let dir = tempfile::tempdir().unwrap();
    let h = StoreHandle::spawn(Store::open(dir.path()).unwrap(), 3);
    // A burst after a quiet spell: 50 alerts a µs apart, none covered, all waiting at once
    // (polled together, each reaches the store before the first commit is done).
    let base = 5_000_000;
    let waits = (0..50).map(|k| h.cover_seq(base + k));
    for r in futures::future::join_all(waits).await {
        r.unwrap();
    }
    assert_eq!(h.lease(), base + LEASE_AHEAD_US);
    assert_eq!(h.lease_commits(), 1, "one commit covers the whole burst");
    // After the lease ran out, the next burst again costs one commit.
    let next = base + 3 * LEASE_AHEAD_US;
    let waits = (0..50).map(|k| h.cover_seq(next + k));
    for r in futures::future::join_all(waits).await {
        r.unwrap();
    }
    assert_eq!(h.lease(), next + LEASE_AHEAD_US);
    assert_eq!(h.lease_commits(), 2);
}

#[tokio::test]
async fn a_lease_waiter_never_polled_again_holds_nobody_up() {
    let dir = tempfile::tempdir().unwrap();
    let h = StoreHandle::spawn(Store::open(dir.path()).unwrap(), 3);
    let base = 5_000_000;
    // The first alert asks for a commit, then is not polled again (its connection is
    // stuck writing a reply, say). A later one beyond what that commit asks for must
    // still get through.
    let mut first = Box::pin(h.cover_seq(base));
    assert!(futures::poll!(first.as_mut()).is_pending());
    let later = base + LEASE_AHEAD_US + 1;
    let second = tokio::time::timeout(Duration::from_secs(30), h.cover_seq(later)).await;
    assert!(
        matches!(second, Ok(Ok(()))),
        "the second alert waited on the first: {second:?}"
    );
    assert_eq!(h.lease(), later + LEASE_AHEAD_US);
    assert_eq!(h.lease_commits(), 2);
    first.await.unwrap();
}

/// Opens the store again once the thread of the dropped handle has released the file.
fn reopen(dir: &Path) -> Store {
    for _ in 0..100 {
        if let Ok(s) = Store::open(dir) {
            return s;
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    panic!("the store did not reopen");
}

#[tokio::test]
async fn handle_commits_before_replying() {
    let dir = tempfile::tempdir().unwrap();
    let h = StoreHandle::spawn(Store::open(dir.path()).unwrap(), 3);
    h.put_durable(env(3, 42)).await.unwrap();
    h.put(env(4, 1));
    assert_eq!(h.envelopes(0, 10).await.unwrap().len(), 2);
    assert_eq!(
        h.missing(vec![(1, 3, 42), (1, 3, 43)]).await.unwrap(),
        vec![(3, 43)]
    );
    h.flush().await.unwrap();
    assert_eq!(h.stats().await.unwrap(), (2, 20));
    drop(h);
    // The thread releases the file once the handle is gone; reopening then sees the data.
    assert_eq!(reopen(dir.path()).own_last_seq().unwrap(), 42);
}

/// Received envelopes wait up to GROUP_WINDOW for company, but a read or a durable put
/// closes the group, and so does the end of the window.
#[tokio::test]
async fn received_puts_share_a_commit_but_reads_and_time_close_it() {
    let dir = tempfile::tempdir().unwrap();
    let h = StoreHandle::spawn(Store::open(dir.path()).unwrap(), 3);
    // A read right behind a received put sees it (the open group is committed first).
    h.put(env(4, 1));
    assert_eq!(h.stats().await.unwrap().0, 1);
    // Puts queued together go in one transaction; a durable put closes the group at once.
    for q in 2..50 {
        h.put(env(4, q));
    }
    h.put_durable(env(3, 7)).await.unwrap();
    assert_eq!(h.stats().await.unwrap().0, 50);
    // With nothing behind it, a received put is committed when the window ends, with
    // nothing else asked of the store (polled, with a margin far beyond the window).
    let before = h.commits();
    h.put(env(5, 1));
    let mut waited = Duration::ZERO;
    while h.commits() == before && waited < Duration::from_secs(30) {
        tokio::time::sleep(Duration::from_millis(20)).await;
        waited += Duration::from_millis(20);
    }
    assert_eq!(h.commits(), before + 1, "the window never closed by itself");
    drop(h);
    assert_eq!(reopen(dir.path()).index().len(), 51);
}

#[test]
fn a_store_from_before_the_receipts_time_index_moves_its_receipts_at_open() {
    use redb::ReadableTableMetadata;
    let dir = tempfile::tempdir().unwrap();
    let mut s = Store::open(dir.path()).unwrap();
    let receipt = |sender: u32, seq: u64| StoredEnvelope {
        channel: crate::receipt::receipt_channel(1),
        ..env(sender, seq)
    };
    s.put(
        &[env(1, 100), receipt(2, 150), env(1, 200), receipt(2, 250)],
        9,
    )
    .unwrap();
    // As a store written before: every row in `by_time`.
    {
        let tx = s.db.begin_write().unwrap();
        {
            let mut by_time = tx.open_table(BY_TIME).unwrap();
            let mut receipts = tx.open_table(RECEIPTS_BY_TIME).unwrap();
            for k in [(150, 2, 150), (250, 2, 250)] {
                receipts.remove(k).unwrap();
                by_time.insert(k, ()).unwrap();
            }
            // And from before receipts had a budget: all counted as alerts.
            let mut meta = tx.open_table(META).unwrap();
            meta.insert(BYTES, 40).unwrap();
            meta.remove(RECEIPT_BYTES).unwrap();
        }
        tx.commit().unwrap();
    }
    drop(s);
    let s = Store::open(dir.path()).unwrap();
    let tx = s.db.begin_read().unwrap();
    assert_eq!(tx.open_table(BY_TIME).unwrap().len().unwrap(), 2);
    assert_eq!(tx.open_table(RECEIPTS_BY_TIME).unwrap().len().unwrap(), 2);
    drop(tx);
    let newest: Vec<u64> = s.newest(10).unwrap().iter().map(|e| e.seq).collect();
    assert_eq!(newest, [200, 100], "alerts only");
    let receipts: Vec<u64> = s
        .newest_receipts(10)
        .unwrap()
        .iter()
        .map(|e| e.seq)
        .collect();
    assert_eq!(receipts, [250, 150]);
    assert_eq!((s.bytes(), s.receipt_bytes()), (40, 20));
    // Opened again: nothing to move, the same figures.
    drop(s);
    let s = Store::open(dir.path()).unwrap();
    assert_eq!((s.bytes(), s.receipt_bytes()), (40, 20));
}
