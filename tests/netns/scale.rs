//! The bound on connections between real daemons: eight members on one LAN with
//! `--max-peers 3` keep at most three authenticated connections each, the graph of those
//! connections joins them all, and an alert from one reaches every other exactly once, on the
//! multicast plane and, with `--no-plane`, by gossip forwarded over several hops. There, the
//! device-lost watchdog calls a quiet sender lost only once it is killed: the members the bound
//! leaves unconnected to it hear nothing of it and leave it to its neighbours.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use serde_json::Value;

use crate::support::common::{BIN, p};
use crate::support::field::{Field, MEMBER};
use crate::support::netns::{self, Cond};

/// Members on the LAN.
const N: usize = 8;
/// Their `--max-peers`.
const MAX: usize = 3;

/// `peers --json` of device `i`: (peer id, state) of each peer it knows.
fn peers(f: &Field, i: usize) -> Vec<(String, String)> {
    let d = &f.devs[i];
    let Ok(o) = d.host.run(BIN, ["peers", "--json", "--data", p(&d.data)]) else {
        return vec![];
    };
    String::from_utf8_lossy(&o.stdout)
        .lines()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .map(|v| {
            let s = |k: &str| v[k].as_str().unwrap_or("").to_string();
            (s("peer_id"), s("state"))
        })
        .collect()
}

/// Each device's authenticated peers (as device indices), once every daemon answers.
fn graph(f: &Field, ids: &[String]) -> Vec<BTreeSet<usize>> {
    (0..N)
        .map(|i| {
            peers(f, i)
                .into_iter()
                .filter(|(_, state)| state == "authenticated")
                .filter_map(|(id, _)| ids.iter().position(|x| *x == id))
                .collect()
        })
        .collect()
}

/// The pairs (a, b) where a lists b as authenticated and b does not list a.
fn one_sided(g: &[BTreeSet<usize>]) -> Vec<(usize, usize)> {
    let mut v = vec![];
    for (a, peers) in g.iter().enumerate() {
        for b in peers {
            if !g[*b].contains(&a) {
                v.push((a, *b));
            }
        }
    }
    v
}

/// Whether the edges join all N devices.
fn connected(g: &[BTreeSet<usize>]) -> bool {
    let mut seen = BTreeSet::from([0]);
    let mut todo = vec![0];
    while let Some(a) = todo.pop() {
        for b in &g[a] {
            if seen.insert(*b) {
                todo.push(*b);
            }
        }
    }
    seen.len() == N
}

/// The first member's enrolment when the watchdog watches it.
const WATCHED: &[&str] = &["--watch", "10"];

/// Starts N members with `--max-peers 3` (and `extra`), waits until each keeps at most three
/// authenticated members, knows the others (on standby) and the graph is connected, then
/// sends 10 alerts from the first and checks every other shows each once. With `watch`, the
/// first is watched every 10 s (enrolled first, so every bundle's descriptor says so).
fn bounded_lan(hint: &str, extra: &[&str], watch: bool) -> Field {
    let names: Vec<String> = (1..=N).map(|i| format!("m{i}")).collect();
    let specs: Vec<(&str, &[&str])> = names
        .iter()
        .enumerate()
        .map(|(i, n)| (n.as_str(), if watch && i == 0 { WATCHED } else { MEMBER }))
        .collect();
    let mut f = Field::provision(hint, &[], &specs);
    let max = MAX.to_string();
    let mut args = vec!["--max-peers", &max];
    args.extend_from_slice(extra);
    for i in 0..N {
        f.start_with(i, &args);
    }
    let ids: Vec<String> = (0..N)
        .map(|i| {
            f.lan
                .wait_until("the daemon answers", Duration::from_secs(20), || {
                    match f.status(i) {
                        Some(s) => Cond::Done(s["peer_id"].as_str().unwrap_or("").to_string()),
                        None => Cond::Pending("no status".into()),
                    }
                })
                .unwrap_or_else(|e| panic!("{e}"))
        })
        .collect();
    // Surplus connections (a node that heard only a few mDNS answers first dials them all)
    // are closed 30 s after they opened, one per tick.
    let settled = f.lan.wait_until(
        "at most 3 authenticated peers each, a connected graph",
        Duration::from_secs(120),
        || {
            std::thread::sleep(Duration::from_millis(900));
            let g = graph(&f, &ids);
            let status: Vec<Option<Value>> = (0..N).map(|i| f.status(i)).collect();
            let known: Vec<u64> = status
                .iter()
                .map(|s| {
                    s.as_ref().map_or(0, |s| {
                        let c = |k: &str| s["peers"][k].as_u64().unwrap_or(0);
                        c("authenticated") + c("standby")
                    })
                })
                .collect();
            let degrees: Vec<usize> = g.iter().map(BTreeSet::len).collect();
            // Both ends agree: a pair is authenticated at each end or at neither. The lists
            // are read one daemon after another, so a close in between shows one end only:
            // it must agree by the next read.
            let one_sided = one_sided(&g);
            let ok = degrees.iter().all(|d| (2..=MAX).contains(d))
                && known.iter().all(|k| *k == N as u64 - 1)
                && one_sided.is_empty()
                && connected(&g);
            if ok {
                Cond::Done((g, status))
            } else {
                let states: Vec<BTreeMap<String, usize>> = (0..N)
                    .map(|i| {
                        let mut m = BTreeMap::new();
                        for (_, s) in peers(&f, i) {
                            *m.entry(s).or_insert(0) += 1;
                        }
                        m
                    })
                    .collect();
                Cond::Pending(format!(
                    "authenticated peers {degrees:?}, authenticated + standby {known:?}, \
                     one end only {one_sided:?}, connected {}, states {states:?}, graph {g:?}",
                    connected(&g)
                ))
            }
        },
    );
    let (g, status) = settled.unwrap_or_else(|e| panic!("{e}"));
    for (i, s) in status.iter().enumerate() {
        let s = s.as_ref().expect("status");
        assert_eq!(s["max_peers"], MAX as u64, "{}: {s}", f.devs[i].name);
    }
    assert!(one_sided(&g).is_empty(), "{g:?}");
    for i in 1..N {
        f.listen(i);
    }
    std::thread::sleep(Duration::from_millis(500));
    f.send(0, hint, 0..10);
    for i in 1..N {
        f.wait_all(i, hint, 10, Duration::from_secs(30));
        f.assert_once(i, hint, 10);
    }
    f
}

/// The `via` of each alert device `i` showed, counted.
fn vias(f: &Field, i: usize) -> BTreeMap<String, usize> {
    let mut m = BTreeMap::new();
    for v in f.shown(i) {
        *m.entry(v["via"].as_str().unwrap_or("").to_string())
            .or_insert(0) += 1;
    }
    m
}

#[test]
fn eight_members_with_three_connections_each_all_get_every_alert() {
    if !netns::require_netns() {
        return;
    }
    // On the multicast plane: every member hears the sender directly.
    let f = bounded_lan("bound", &[], false);
    let by_plane: usize = (1..N)
        .map(|i| vias(&f, i).get("multicast").copied().unwrap_or(0))
        .sum();
    assert!(by_plane >= 50, "few by multicast: {by_plane} of 70");
    drop(f);
    // Gossip only: members not connected to the sender get each alert over several hops.
    // The sender is watched every 10 s.
    let mut f = bounded_lan("boundgsp", &["--no-plane"], true);
    // The sender keeps at most 3 connections: at least 4 members are two hops away or more.
    for i in 1..N {
        let v = vias(&f, i);
        assert_eq!(v.get("multicast"), None, "{}: {v:?}", f.devs[i].name);
        let gossip = v.get("gossip").copied().unwrap_or(0);
        assert!(gossip >= 8, "{}: {v:?}", f.devs[i].name);
    }
    // The watchdog. The sender now says nothing for 2.8 periods: the members the bound leaves
    // unconnected to it hear nothing of it, and must not call it lost (only its neighbours
    // witness it, and their probes hear it). One would have announced 10 s after the last
    // alert, plus up to 6 s and a few quarters for its place in line.
    std::thread::sleep(Duration::from_secs(28));
    let lost = |f: &Field, i: usize| -> usize {
        f.shown(i)
            .iter()
            .filter(|v| v["kind"] == "device-lost")
            .filter(|v| {
                v["attributes"]
                    .as_array()
                    .is_some_and(|a| a.iter().any(|kv| kv[0] == "device" && kv[1] == "m1"))
            })
            .count()
    };
    let shown: Vec<usize> = (1..N).map(|i| lost(&f, i)).collect();
    assert!(
        shown.iter().all(|n| *n == 0),
        "device-lost shown while alive: {shown:?}"
    );
    // Killed: its neighbours announce it, and every member shows it exactly once.
    f.devs[0]
        .daemon
        .as_mut()
        .expect("m1 runs")
        .signal("KILL")
        .expect("SIGKILL");
    f.lan
        .wait_until(
            "every member shows m1 lost",
            Duration::from_secs(30),
            || {
                let shown: Vec<usize> = (1..N).map(|i| lost(&f, i)).collect();
                if shown.iter().all(|n| *n == 1) {
                    Cond::Done(())
                } else if shown.iter().any(|n| *n > 1) {
                    Cond::Failed(format!("shown more than once: {shown:?}"))
                } else {
                    Cond::Pending(format!("{shown:?}"))
                }
            },
        )
        .unwrap_or_else(|e| panic!("{e}"));
    // Past the latest place in line a neighbour may hold.
    std::thread::sleep(Duration::from_secs(7));
    let shown: Vec<usize> = (1..N).map(|i| lost(&f, i)).collect();
    assert!(
        shown.iter().all(|n| *n == 1),
        "later copies shown: {shown:?}"
    );
}
