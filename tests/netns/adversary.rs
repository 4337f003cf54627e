//! A stranger on the LAN, or a hostile member, against real daemons (issue 24): each attack
//! runs next to honest members, and the test checks both that the attack is bounded and that
//! the members still work.

use std::time::Duration;

use crate::support::field::{Field, MEMBER};
use crate::support::netns::{self, Cond};

/// The TCP port device `i`'s daemon listens on.
fn tcp_port(f: &Field, i: usize) -> u16 {
    let s = f.status(i).expect("status");
    s["listen_addrs"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|a| a.as_str())
        .find_map(|a| a.rsplit_once("/tcp/").and_then(|(_, p)| p.parse().ok()))
        .unwrap_or_else(|| panic!("no TCP listen address in {s}"))
}

/// A Python program that opens `n` TCP connections to `addr:port` and holds them for `hold_s`
/// seconds without sending a byte. After one second it prints how many the daemon had closed
/// (`closed K of N`), then `done` when it lets go.
const HOLD: &str = r#"
import socket, sys, time
addr, port, n, hold = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), float(sys.argv[4])
socks = []
for _ in range(n):
    s = socket.create_connection((addr, port), timeout=2)
    socks.append(s)
time.sleep(1)
closed = 0
for s in socks:
    s.setblocking(False)
    try:
        if s.recv(1) == b'':
            closed += 1
    except BlockingIOError:
        pass
    except ConnectionResetError:
        closed += 1
print('closed', closed, 'of', n, flush=True)
time.sleep(hold)
print('done', flush=True)
"#;

#[test]
fn a_stranger_opening_many_connections_is_held_to_its_share() {
    if !netns::require_netns() {
        return;
    }
    let mut f = Field::provision(
        "connflood",
        &[],
        &[("m1", MEMBER), ("m2", MEMBER), ("m3", MEMBER)],
    );
    let (m1, m2, m3) = (f.idx("m1"), f.idx("m2"), f.idx("m3"));
    f.start(m1);
    f.start(m2);
    let stranger = f.lan.add_host("x").expect("stranger");
    f.lan
        .wait_until(
            "m1 and m2 authenticate",
            Duration::from_secs(30),
            || match f
                .status(m2)
                .and_then(|s| s["peers"]["authenticated"].as_u64())
            {
                Some(1) => Cond::Done(()),
                other => Cond::Pending(format!("{other:?}")),
            },
        )
        .unwrap_or_else(|e| panic!("{e}"));
    let victim = f.devs[m2].host.addr().to_string();
    let port = tcp_port(&f, m2).to_string();
    let mut holder = stranger
        .spawn("python3", ["-c", HOLD, &victim, &port, "20", "20"], &[])
        .expect("stranger");
    let closed = f
        .lan
        .wait_until(
            "the stranger reports",
            Duration::from_secs(15),
            || match holder
                .stdout_lines()
                .iter()
                .find(|l| l.starts_with("closed"))
            {
                Some(l) => Cond::Done(l.clone()),
                None => Cond::Pending(holder.stderr()),
            },
        )
        .unwrap_or_else(|e| panic!("{e}"));
    // Four from one address wait for a hello; the daemon closed the other 16 at once.
    assert_eq!(closed, "closed 16 of 20", "{}", holder.stderr());
    let s = f.status(m2).expect("status answers during the flood");
    assert!(s["peers"]["denied"].as_u64() >= Some(16), "{}", s["peers"]);
    assert!(
        s["peers"]["unauthenticated"].as_u64() <= Some(4),
        "{}",
        s["peers"]
    );
    // While the stranger holds its share, a member from another address still gets in, and
    // alerts flow both ways.
    f.start(m3);
    f.lan
        .wait_until(
            "m3 authenticates with m2",
            Duration::from_secs(30),
            || match f
                .status(m2)
                .and_then(|s| s["peers"]["authenticated"].as_u64())
            {
                Some(2) => Cond::Done(()),
                other => Cond::Pending(format!("{other:?}")),
            },
        )
        .unwrap_or_else(|e| panic!("{e}"));
    f.listen(m2);
    std::thread::sleep(Duration::from_millis(500));
    f.send(m3, "through", 0..5);
    f.wait_all(m2, "through", 5, Duration::from_secs(20));
    assert!(
        holder.try_wait().expect("stranger").is_none(),
        "the stranger let go before the member got in: the test proves nothing"
    );
}
