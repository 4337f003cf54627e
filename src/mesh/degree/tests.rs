use super::*;

/// A seeded xorshift: the same "random" peer ids at every run, no dependency.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
}

/// `n` members with random ids (as keys) placed by [`ring_position`] of the id's bytes.
fn members(rng: &mut Rng, n: usize) -> Vec<(u64, u64)> {
    (0..n)
        .map(|_| {
            let id = rng.next();
            (ring_position(&id.to_be_bytes()), id)
        })
        .collect()
}

/// Hops from `from` to every member (BFS); `None` for one it cannot reach.
fn hops(o: &Overlay<u64>, from: u64) -> BTreeMap<u64, usize> {
    let mut seen = BTreeMap::from([(from, 0)]);
    let mut frontier = vec![from];
    while !frontier.is_empty() {
        let mut next = vec![];
        for a in frontier {
            let d = seen[&a];
            for b in o.neighbours(&a) {
                if let std::collections::btree_map::Entry::Vacant(e) = seen.entry(b) {
                    e.insert(d + 1);
                    next.push(b);
                }
            }
        }
        frontier = next;
    }
    seen
}

/// Largest degree and diameter (None when not connected).
fn measure(o: &Overlay<u64>) -> (usize, Option<usize>) {
    let degree = o
        .members()
        .iter()
        .map(|k| o.neighbours(k).len())
        .max()
        .unwrap_or(0);
    let mut diameter = 0;
    for k in o.members() {
        let h = hops(o, *k);
        if h.len() != o.members().len() {
            return (degree, None);
        }
        diameter = diameter.max(h.values().copied().max().unwrap_or(0));
    }
    (degree, Some(diameter))
}

fn edges(o: &Overlay<u64>) -> BTreeSet<(u64, u64)> {
    o.members()
        .iter()
        .flat_map(|a| {
            o.neighbours(a)
                .into_iter()
                .map(move |b| (*a.min(&b), *a.max(&b)))
        })
        .collect()
}

/// Membership changes (edges added or removed) between two overlays, not counting the edges
/// of `x`, the member that joined.
fn changed(a: &Overlay<u64>, b: &Overlay<u64>, x: u64) -> usize {
    edges(a)
        .symmetric_difference(&edges(b))
        .filter(|(p, q)| *p != x && *q != x)
        .count()
}

#[test]
fn every_size_is_connected_within_the_bound() {
    let mut rng = Rng(0x1234_5678_9abc_def1);
    for max in [2, 3, 4, DEFAULT_MAX_PEERS] {
        for n in 2..=120 {
            let o = Overlay::new(members(&mut rng, n), max);
            let (degree, diameter) = measure(&o);
            assert!(degree <= max, "max {max}, n {n}: degree {degree}");
            assert!(diameter.is_some(), "max {max}, n {n}: not connected");
            assert_eq!(o.is_bounded(), n > max + 1, "max {max}, n {n}");
            // Every member keeps both ring neighbours (one in a domain of two).
            let least = o.members().iter().map(|k| o.neighbours(k).len()).min();
            assert!(least >= Some(2.min(n - 1)), "max {max}, n {n}");
        }
    }
}

#[test]
fn a_small_domain_is_a_full_mesh() {
    let mut rng = Rng(7);
    for n in 2..=DEFAULT_MAX_PEERS + 1 {
        let m = members(&mut rng, n);
        let o = Overlay::new(m.clone(), DEFAULT_MAX_PEERS);
        for (_, a) in &m {
            assert_eq!(o.neighbours(a).len(), n - 1, "n {n}");
            for (_, b) in &m {
                assert_eq!(o.wants(a, b), a != b);
            }
        }
    }
    // One more member: the bound applies.
    let o = Overlay::new(members(&mut rng, DEFAULT_MAX_PEERS + 2), DEFAULT_MAX_PEERS);
    assert!(o.is_bounded());
}

#[test]
fn both_ends_agree_and_strangers_are_not_wanted() {
    let mut rng = Rng(99);
    let m = members(&mut rng, 50);
    let o = Overlay::new(m.clone(), DEFAULT_MAX_PEERS);
    let mut pairs = 0;
    for (_, a) in &m {
        for (_, b) in &m {
            assert_eq!(o.wants(a, b), o.wants(b, a), "{a} {b}");
            pairs += usize::from(o.wants(a, b));
        }
        assert!(!o.wants(a, &0), "not a member");
    }
    // Bounded: far fewer than the 1,225 pairs of a full mesh.
    assert!(
        pairs / 2 <= 50 * DEFAULT_MAX_PEERS / 2,
        "{} pairs",
        pairs / 2
    );
    // The order members are given in does not matter.
    let mut reversed = m.clone();
    reversed.reverse();
    assert_eq!(Overlay::new(reversed, DEFAULT_MAX_PEERS), o);
}

#[test]
fn the_diameter_stays_near_log_n() {
    let mut rng = Rng(0xfeed_beef);
    for (n, most) in [(30, 4), (100, 5), (120, 6)] {
        for _ in 0..10 {
            let o = Overlay::new(members(&mut rng, n), DEFAULT_MAX_PEERS);
            let (degree, diameter) = measure(&o);
            assert!(degree <= DEFAULT_MAX_PEERS);
            assert!(diameter.is_some_and(|d| d <= most), "n {n}: {diameter:?}");
        }
    }
}

#[test]
fn a_member_joining_or_leaving_changes_few_edges() {
    let mut rng = Rng(0x5eed);
    let mut all = vec![];
    for n in DEFAULT_MAX_PEERS + 2..=120 {
        // Between powers of two (the fingers' fractions change once when n crosses one).
        if (n + 1).is_power_of_two() || n.is_power_of_two() {
            continue;
        }
        for _ in 0..3 {
            let m = members(&mut rng, n);
            let joiner = members(&mut rng, 1);
            let mut bigger = m.clone();
            bigger.extend(joiner.clone());
            let (a, b) = (
                Overlay::new(m, DEFAULT_MAX_PEERS),
                Overlay::new(bigger, DEFAULT_MAX_PEERS),
            );
            // Leaving is the same comparison the other way round.
            all.push(changed(&a, &b, joiner[0].1));
        }
    }
    all.sort_unstable();
    let (median, worst) = (all[all.len() / 2], all[all.len() - 1]);
    assert!(median <= 10, "median {median} edges change per join");
    assert!(worst <= 30, "at worst {worst} edges change per join");
}

#[test]
fn ring_positions_are_the_hash_of_the_id() {
    // SHA-256("") starts e3b0c44298fc1c14.
    assert_eq!(ring_position(b""), 0xe3b0_c442_98fc_1c14);
}
