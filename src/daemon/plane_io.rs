//! The data plane's sockets: which interfaces carry it, one receive socket per address
//! family joined to the group on each of them, one send socket per interface, and the
//! periodic re-read of the interfaces.
//!
//! This room moves bytes only: what a datagram holds, and whether it is genuine, is the
//! core's ([`crate::plane`]). Nothing here blocks the loop: sends are non-blocking (a full
//! send buffer drops the copy, which repair or gossip recovers) and receives drain what
//! the kernel holds, a bounded number per turn.

use std::collections::BTreeMap;
use std::io;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, SocketAddrV4, SocketAddrV6, UdpSocket};

use libp2p::Multiaddr;
use libp2p::multiaddr::Protocol;
use socket2::{Domain, Protocol as SockProto, Socket, Type};

/// The receive buffer asked of the kernel (it caps it at `net.core.rmem_max`).
const RECV_BUFFER: usize = 4 << 20;

/// Where the plane is sent and heard.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct GroupAddrs {
    /// The IPv4 group (local scope, 239.255/16).
    pub v4: Ipv4Addr,
    /// The IPv6 group (link-local scope).
    pub v6: Ipv6Addr,
    /// The UDP port of both.
    pub port: u16,
}

/// One interface the plane uses, and the family it sends on there.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct PlaneIface {
    /// Interface name (`eth0`).
    pub name: String,
    /// Interface index.
    pub index: u32,
    /// Its IPv4 address, if it has one: then the plane sends IPv4 there, never both.
    pub v4: Option<Ipv4Addr>,
    /// Its IPv6 link-local address, used when it has no IPv4 address.
    pub v6: Option<Ipv6Addr>,
}

/// Chooses the plane's interfaces from the host's addresses: up, not loopback, not
/// point-to-point, and carrying one of the swarm's listen addresses (an unspecified listen
/// address, `0.0.0.0` or `::`, carries all of its family); or exactly those named.
pub(crate) fn choose_interfaces(
    addrs: &[if_addrs::Interface],
    listen: &[Multiaddr],
    named: &[String],
) -> Vec<PlaneIface> {
    let mut by_name: BTreeMap<String, PlaneIface> = BTreeMap::new();
    let listen_ips: Vec<IpAddr> = listen.iter().filter_map(listen_ip).collect();
    for a in addrs {
        let up = a.is_oper_up() || oper_unknown(a);
        if a.is_loopback() || a.is_p2p() || !up {
            continue;
        }
        if !named.is_empty() && !named.iter().any(|n| n == &a.name) {
            continue;
        }
        let ip = a.ip();
        let carried = !named.is_empty()
            || listen_ips.iter().any(|l| {
                *l == ip || (l.is_unspecified() && l.is_ipv4() == ip.is_ipv4())
                // An IPv6 wildcard also takes IPv4 on Linux unless v6-only; libp2p
                // binds v6-only, so it carries IPv6 only.
            });
        let Some(index) = a.index else { continue };
        let e = by_name.entry(a.name.clone()).or_insert_with(|| PlaneIface {
            name: a.name.clone(),
            index,
            v4: None,
            v6: None,
        });
        match ip {
            IpAddr::V4(v4) if carried => e.v4 = e.v4.or(Some(v4)),
            IpAddr::V6(v6) if is_link_local(&v6) => e.v6 = e.v6.or(Some(v6)),
            _ => {}
        }
    }
    // An interface with neither an IPv4 address the swarm listens on nor (with an IPv6
    // listen address) a link-local one is not the plane's.
    let v6_listen = named
        .is_empty()
        .then(|| listen_ips.iter().any(IpAddr::is_ipv6));
    by_name
        .into_values()
        .filter(|i| i.v4.is_some() || (i.v6.is_some() && v6_listen.unwrap_or(true)))
        .collect()
}

/// Some virtual interfaces (veth in a fresh namespace) report an unknown operational state
/// while they pass traffic.
fn oper_unknown(a: &if_addrs::Interface) -> bool {
    matches!(a.oper_status, if_addrs::IfOperStatus::Unknown)
}

fn listen_ip(m: &Multiaddr) -> Option<IpAddr> {
    match m.iter().next()? {
        Protocol::Ip4(a) => Some(IpAddr::V4(a)),
        Protocol::Ip6(a) => Some(IpAddr::V6(a)),
        _ => None,
    }
}

fn is_link_local(a: &Ipv6Addr) -> bool {
    (a.segments()[0] & 0xffc0) == 0xfe80
}

/// The plane's sockets on the interfaces chosen.
#[derive(Debug)]
pub(crate) struct PlaneSockets {
    group: GroupAddrs,
    /// IPv4 receive socket (bound to the group and port), when any interface sends IPv4.
    pub rx4: Option<tokio::net::UdpSocket>,
    /// IPv6 receive socket (bound to `[::]:port`, v6 only).
    pub rx6: Option<tokio::net::UdpSocket>,
    tx: Vec<Tx>,
    ifaces: Vec<PlaneIface>,
    /// The receive buffer the kernel granted (bytes), for `status`.
    pub recv_buffer: usize,
}

#[derive(Debug)]
struct Tx {
    socket: UdpSocket,
    dest: SocketAddr,
}

impl PlaneSockets {
    /// Opens the sockets on `ifaces` (no interface: no sockets, nothing sent or heard).
    pub(crate) fn open(group: GroupAddrs, ifaces: Vec<PlaneIface>) -> io::Result<Self> {
        let mut s = PlaneSockets {
            group,
            rx4: None,
            rx6: None,
            tx: Vec::new(),
            ifaces: Vec::new(),
            recv_buffer: 0,
        };
        s.set_interfaces(ifaces)?;
        Ok(s)
    }

    /// The interfaces the plane uses now.
    pub(crate) fn interfaces(&self) -> &[PlaneIface] {
        &self.ifaces
    }

    /// Re-opens the sockets if the interfaces changed; with `rejoin`, drops and adds each
    /// membership anyway (an unsolicited report, for snooping switches without a querier).
    /// Returns whether anything changed.
    pub(crate) fn refresh(&mut self, ifaces: Vec<PlaneIface>, rejoin: bool) -> io::Result<bool> {
        if ifaces == self.ifaces {
            if rejoin {
                self.rejoin();
            }
            return Ok(false);
        }
        self.set_interfaces(ifaces)?;
        Ok(true)
    }

    fn set_interfaces(&mut self, ifaces: Vec<PlaneIface>) -> io::Result<()> {
        let g = self.group;
        let need4 = ifaces.iter().any(|i| i.v4.is_some());
        let need6 = ifaces.iter().any(|i| i.v6.is_some());
        let mut rx4 = None;
        let mut rx6 = None;
        let mut recv_buffer = 0;
        if need4 {
            let s = recv_socket(SocketAddr::V4(SocketAddrV4::new(g.v4, g.port)))?;
            s.set_multicast_all_v4(false)?;
            for i in &ifaces {
                if let Some(a) = i.v4
                    && let Err(e) = s.join_multicast_v4(&g.v4, &a)
                {
                    tracing::warn!(iface = %i.name, error = %e, "plane: cannot join the IPv4 group");
                }
            }
            recv_buffer = s.recv_buffer_size().unwrap_or(0);
            rx4 = Some(tokio::net::UdpSocket::from_std(s.into())?);
        }
        if need6 {
            let s = recv_socket(SocketAddr::V6(SocketAddrV6::new(
                Ipv6Addr::UNSPECIFIED,
                g.port,
                0,
                0,
            )))?;
            s.set_multicast_all_v6(false)?;
            for i in ifaces.iter().filter(|i| i.v6.is_some()) {
                // An address still tentative (DAD) fails here: the next refresh retries.
                if let Err(e) = s.join_multicast_v6(&g.v6, i.index) {
                    tracing::warn!(iface = %i.name, error = %e, "plane: cannot join the IPv6 group");
                }
            }
            recv_buffer = recv_buffer.max(s.recv_buffer_size().unwrap_or(0));
            rx6 = Some(tokio::net::UdpSocket::from_std(s.into())?);
        }
        let mut tx = Vec::new();
        for i in &ifaces {
            match send_socket(i, g) {
                Ok(t) => tx.push(t),
                Err(e) => {
                    tracing::warn!(iface = %i.name, error = %e, "plane: cannot send on this interface")
                }
            }
        }
        if !ifaces.is_empty() {
            tracing::info!(
                interfaces = ?ifaces.iter().map(|i| i.name.as_str()).collect::<Vec<_>>(),
                group4 = %g.v4, group6 = %g.v6, port = g.port, recv_buffer,
                "plane: sockets open"
            );
        }
        self.rx4 = rx4;
        self.rx6 = rx6;
        self.tx = tx;
        self.ifaces = ifaces;
        self.recv_buffer = recv_buffer;
        Ok(())
    }

    fn rejoin(&self) {
        let g = self.group;
        for i in &self.ifaces {
            if let (Some(rx), Some(a)) = (&self.rx4, i.v4) {
                let s = socket2::SockRef::from(rx);
                let _ = s.leave_multicast_v4(&g.v4, &a);
                let _ = s.join_multicast_v4(&g.v4, &a);
            }
            if let (Some(rx), Some(_)) = (&self.rx6, i.v6) {
                let s = socket2::SockRef::from(rx);
                let _ = s.leave_multicast_v6(&g.v6, i.index);
                let _ = s.join_multicast_v6(&g.v6, i.index);
            }
        }
    }

    /// Sends one datagram once on each interface; returns how many copies left and how
    /// many could not (a full buffer or a down interface: repair or gossip recovers them).
    pub(crate) fn send(&self, datagram: &[u8]) -> (u32, u32) {
        let (mut ok, mut failed) = (0, 0);
        for t in &self.tx {
            match t.socket.send_to(datagram, t.dest) {
                Ok(_) => ok += 1,
                Err(e) => {
                    failed += 1;
                    tracing::debug!(dest = %t.dest, error = %e, "plane: send failed");
                }
            }
        }
        (ok, failed)
    }

    /// Waits until a receive socket has a datagram (forever when there is none).
    pub(crate) async fn readable(&self) {
        match (&self.rx4, &self.rx6) {
            (Some(a), Some(b)) => {
                tokio::select! {
                    _ = a.readable() => {},
                    _ = b.readable() => {},
                }
            }
            (Some(a), None) | (None, Some(a)) => {
                let _ = a.readable().await;
            }
            (None, None) => std::future::pending().await,
        }
    }

    /// Takes one waiting datagram into `buf` without blocking: its length and source, or
    /// `None` when both sockets are empty.
    pub(crate) fn try_recv(&self, buf: &mut [u8]) -> Option<(usize, SocketAddr)> {
        for rx in [&self.rx4, &self.rx6].into_iter().flatten() {
            match rx.try_recv_from(buf) {
                Ok(r) => return Some(r),
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                Err(e) => tracing::debug!(error = %e, "plane: receive failed"),
            }
        }
        None
    }
}

fn recv_socket(bind: SocketAddr) -> io::Result<Socket> {
    let s = Socket::new(Domain::for_address(bind), Type::DGRAM, Some(SockProto::UDP))?;
    // Several daemons on one host (tests, a sniffer) may bind the port.
    s.set_reuse_address(true)?;
    s.set_reuse_port(true)?;
    if bind.is_ipv6() {
        s.set_only_v6(true)?;
    }
    let _ = s.set_recv_buffer_size(RECV_BUFFER);
    s.set_nonblocking(true)?;
    s.bind(&bind.into())?;
    Ok(s)
}

fn send_socket(i: &PlaneIface, g: GroupAddrs) -> io::Result<Tx> {
    if let Some(a) = i.v4 {
        let s = Socket::new(Domain::IPV4, Type::DGRAM, Some(SockProto::UDP))?;
        s.bind(&SocketAddr::V4(SocketAddrV4::new(a, 0)).into())?;
        s.set_multicast_if_v4(&a)?;
        s.set_multicast_ttl_v4(1)?;
        // The node never needs its own datagrams (receivers also drop their own sender).
        s.set_multicast_loop_v4(false)?;
        s.set_nonblocking(true)?;
        return Ok(Tx {
            socket: s.into(),
            dest: SocketAddr::V4(SocketAddrV4::new(g.v4, g.port)),
        });
    }
    let ll =
        i.v6.ok_or_else(|| io::Error::new(io::ErrorKind::AddrNotAvailable, "no address"))?;
    let s = Socket::new(Domain::IPV6, Type::DGRAM, Some(SockProto::UDP))?;
    s.set_only_v6(true)?;
    s.bind(&SocketAddr::V6(SocketAddrV6::new(ll, 0, 0, i.index)).into())?;
    s.set_multicast_if_v6(i.index)?;
    s.set_multicast_hops_v6(1)?;
    s.set_multicast_loop_v6(false)?;
    s.set_nonblocking(true)?;
    Ok(Tx {
        socket: s.into(),
        dest: SocketAddr::V6(SocketAddrV6::new(g.v6, g.port, 0, i.index)),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn iface(name: &str, index: u32, ip: IpAddr) -> if_addrs::Interface {
        let addr = match ip {
            IpAddr::V4(ip) => if_addrs::IfAddr::V4(if_addrs::Ifv4Addr {
                ip,
                netmask: Ipv4Addr::new(255, 255, 255, 0),
                prefixlen: 24,
                broadcast: None,
            }),
            IpAddr::V6(ip) => if_addrs::IfAddr::V6(if_addrs::Ifv6Addr {
                ip,
                netmask: Ipv6Addr::UNSPECIFIED,
                prefixlen: 64,
                broadcast: None,
            }),
        };
        if_addrs::Interface {
            name: name.into(),
            addr,
            index: Some(index),
            oper_status: if_addrs::IfOperStatus::Up,
            is_p2p: false,
        }
    }

    fn ma(s: &str) -> Multiaddr {
        s.parse().unwrap()
    }

    #[test]
    fn interfaces_follow_the_listen_addresses() {
        let host = [
            iface("lo", 1, IpAddr::V4(Ipv4Addr::LOCALHOST)),
            iface("eth0", 2, IpAddr::V4(Ipv4Addr::new(10, 0, 0, 2))),
            iface("eth0", 2, IpAddr::V6("fe80::1".parse().unwrap())),
            iface("wlan0", 3, IpAddr::V6("fe80::2".parse().unwrap())),
            iface("eth1", 4, IpAddr::V4(Ipv4Addr::new(192, 168, 1, 2))),
        ];
        // The default listen address: every IPv4 interface but loopback, IPv4 there.
        let all = choose_interfaces(&host, &[ma("/ip4/0.0.0.0/tcp/0")], &[]);
        let names: Vec<_> = all.iter().map(|i| i.name.as_str()).collect();
        assert_eq!(names, ["eth0", "eth1"]);
        assert_eq!(all[0].v4, Some(Ipv4Addr::new(10, 0, 0, 2)));
        // Loopback only (the tests outside namespaces): no interface, nothing sent.
        assert!(choose_interfaces(&host, &[ma("/ip4/127.0.0.1/tcp/0")], &[]).is_empty());
        // One address: its interface only.
        let one = choose_interfaces(&host, &[ma("/ip4/192.168.1.2/tcp/7000")], &[]);
        assert_eq!(one.len(), 1);
        assert_eq!(one[0].name, "eth1");
        // An IPv6 listen address takes the IPv6-only interface too (link-local source).
        let v6 = choose_interfaces(&host, &[ma("/ip6/::/tcp/0")], &[]);
        let names: Vec<_> = v6.iter().map(|i| i.name.as_str()).collect();
        assert_eq!(names, ["eth0", "wlan0"]);
        assert!(v6[0].v4.is_none() && v6[0].v6.is_some());
        // Named interfaces win over the listen addresses.
        let named = choose_interfaces(&host, &[ma("/ip4/127.0.0.1/tcp/0")], &["wlan0".into()]);
        assert_eq!(named.len(), 1);
        assert_eq!(named[0].index, 3);
    }
}
