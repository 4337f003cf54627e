//! Multiaddr helpers: which addresses are direct, relayed, loopback or unspecified.
//!
//! Pure functions of an address; they never dial or resolve.

use libp2p::Multiaddr;

pub(super) fn is_circuit(a: &Multiaddr) -> bool {
    a.iter()
        .any(|p| matches!(p, libp2p::multiaddr::Protocol::P2pCircuit))
}

/// The address without its /p2p/… parts.
pub(super) fn strip_p2p(a: Multiaddr) -> Multiaddr {
    a.into_iter()
        .filter(|p| !matches!(p, libp2p::multiaddr::Protocol::P2p(_)))
        .collect()
}

pub(super) fn is_unspecified(a: &Multiaddr) -> bool {
    a.iter().any(|p| match p {
        libp2p::multiaddr::Protocol::Ip4(ip) => ip.is_unspecified(),
        libp2p::multiaddr::Protocol::Ip6(ip) => ip.is_unspecified(),
        _ => false,
    })
}

pub(super) fn is_loopback(a: &Multiaddr) -> bool {
    a.iter().any(|p| match p {
        libp2p::multiaddr::Protocol::Ip4(ip) => ip.is_loopback(),
        libp2p::multiaddr::Protocol::Ip6(ip) => ip.is_loopback(),
        _ => false,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const PEER: &str = "12D3KooWAe1AuNR6C8KnymD6Cd9BkgfAS88Up4LuLynrff7TBVxi";

    fn addr(s: &str) -> Multiaddr {
        s.parse().unwrap()
    }

    #[test]
    fn a_relayed_address_is_a_circuit_and_a_direct_one_is_not() {
        assert!(is_circuit(&addr(&format!(
            "/ip4/10.0.0.1/tcp/4001/p2p/{PEER}/p2p-circuit"
        ))));
        assert!(!is_circuit(&addr(&format!(
            "/ip4/10.0.0.1/tcp/4001/p2p/{PEER}"
        ))));
    }

    #[test]
    fn strip_p2p_drops_every_peer_id_and_keeps_the_rest() {
        let a = addr(&format!(
            "/ip4/10.0.0.1/tcp/4001/p2p/{PEER}/p2p-circuit/p2p/{PEER}"
        ));
        assert_eq!(strip_p2p(a), addr("/ip4/10.0.0.1/tcp/4001/p2p-circuit"));
        let plain = addr("/ip4/10.0.0.1/tcp/4001");
        assert_eq!(strip_p2p(plain.clone()), plain);
    }

    #[test]
    fn unspecified_and_loopback_addresses_are_told_apart_in_both_families() {
        for (s, unspecified, loopback) in [
            ("/ip4/0.0.0.0/tcp/0", true, false),
            ("/ip6/::/tcp/0", true, false),
            ("/ip4/127.0.0.1/tcp/4001", false, true),
            ("/ip6/::1/tcp/4001", false, true),
            ("/ip4/192.168.1.20/tcp/4001", false, false),
            ("/dns4/localhost/tcp/4001", false, false),
        ] {
            assert_eq!(is_unspecified(&addr(s)), unspecified, "{s}");
            assert_eq!(is_loopback(&addr(s)), loopback, "{s}");
        }
    }
}
