//! The authority's unit tests: enrolment, revocation, channels, brokers, plane epochs,
//! persistence.

use super::*;
use rand_core::OsRng;

#[test]
fn enrolment_numbers_names_channels_and_persistence() {
    let mut a = Authority::create("site", 1_000_000, &mut OsRng).unwrap();
    let req = |name: &str| EnrollRequest {
        name: name.into(),
        ..Default::default()
    };
    let (b1, _) = a.enroll(&req("cam"), 1_000, &mut OsRng).unwrap();
    assert!(matches!(
        a.enroll(&req("cam"), 1_000, &mut OsRng),
        Err(DomainError::AlreadyEnrolled(_))
    ));
    let forced = EnrollRequest {
        force: true,
        ..req("cam")
    };
    let (b2, _) = a.enroll(&forced, 1_000, &mut OsRng).unwrap();
    assert_ne!(
        b1.cert.body.device, b2.cert.body.device,
        "numbers are never reused"
    );
    assert!(a.registry()[0].replaced && !a.registry()[1].replaced);

    // New channels are created with their own number and a key for readers only.
    let ops = EnrollRequest {
        channels: vec!["ops".into(), "alerts".into()],
        ..req("hh")
    };
    let (b3, created) = a.enroll(&ops, 1_000, &mut OsRng).unwrap();
    assert_eq!(created, vec!["ops".to_string()]);
    // Numbers follow the highest channel's, never the plane's pseudo-channel.
    assert_eq!(a.descriptor().channel_by_name("ops").map(|c| c.id), Some(2));
    assert!(b3.cert.body.grants.iter().all(|g| !is_reserved(g.channel)));
    assert_eq!(b3.sealed.len(), 3, "ops, alerts and the plane");
    let relay = EnrollRequest {
        relay_only: true,
        ..req("relay")
    };
    let (b4, _) = a.enroll(&relay, 1_000, &mut OsRng).unwrap();
    let relay_keys: Vec<(u32, u32)> = b4
        .sealed
        .iter()
        .map(|k| (k.body.channel, k.body.epoch))
        .collect();
    assert_eq!(
        relay_keys,
        vec![(PLANE_CHANNEL, 2)],
        "a relay gets the plane key only (epoch 2: the forced re-enrolment re-keyed it)"
    );
    assert_eq!(
        b4.cert.body.grants.len(),
        2,
        "a relay carries every channel"
    );
    assert!(b4.cert.body.grants.iter().all(|g| !g.read && !g.write));

    assert!(matches!(
        a.enroll(&req("bad name"), 1_000, &mut OsRng),
        Err(DomainError::Invalid(_))
    ));

    // Brokers go into the descriptor; later bundles carry them.
    let b = "/ip4/10.0.0.1/tcp/4777/p2p/12D3KooWHkcmUBx9sDc2ZHcJ7YpB6oSLGCUZexN9t8pyqw56Vi9o";
    assert!(
        a.set_broker("/ip4/10.0.0.1/tcp/4777", false, 1_000, &mut OsRng)
            .is_err(),
        "a peer id is needed"
    );
    assert!(a.set_broker(b, false, 1_000, &mut OsRng).unwrap().is_some());
    assert!(
        a.set_broker(b, false, 1_000, &mut OsRng).unwrap().is_none(),
        "already there"
    );
    let (late, _) = a.enroll(&req("after-broker"), 1_000, &mut OsRng).unwrap();
    assert_eq!(late.descriptor.body.brokers, vec![b.to_string()]);
    assert!(a.set_broker(b, true, 1_000, &mut OsRng).unwrap().is_some());
    assert!(a.descriptor().body.brokers.is_empty());

    let dir = tempfile::tempdir().unwrap();
    a.save(dir.path()).unwrap();
    let b = Authority::load(dir.path()).unwrap();
    assert_eq!(b.descriptor(), a.descriptor());
    assert_eq!(b.registry().len(), 5);
    // The forced re-enrolment revoked the first "cam" and re-keyed what it read: later
    // devices get epoch 2, the same secret for each of them.
    assert_eq!(b.descriptor().body.revoked, vec![b1.cert.body.device]);
    let mut b = b;
    let (b5, _) = b.enroll(&req("late"), 1_000, &mut OsRng).unwrap();
    let k1 = b1.into_node_config(dir.path()).unwrap().channel_secrets;
    let k3 = b3.into_node_config(dir.path()).unwrap().channel_secrets;
    let k5 = b5.into_node_config(dir.path()).unwrap().channel_secrets;
    let alerts = |k: &Vec<(u32, u32, Chain)>| k.iter().find(|c| c.0 == 1).cloned().unwrap();
    assert_eq!((alerts(&k1).1, alerts(&k5).1), (1, 2));
    assert_ne!(alerts(&k1).2, alerts(&k5).2);
    assert_eq!(alerts(&k3), alerts(&k5));
    // Every change made an update, numbered after the bundle revision it follows.
    let serials: Vec<u64> = a.new_updates().iter().map(|u| u.body.serial).collect();
    assert_eq!(serials, (2..2 + serials.len() as u64).collect::<Vec<_>>());
    assert!(update_path(dir.path(), serials[0]).exists());
}

#[test]
fn revocation_rekeys_the_remaining_readers_only() {
    let now = 1_800_000_000;
    let mut a = Authority::create("site", now, &mut OsRng).unwrap();
    let req = |name: &str, relay_only: bool| EnrollRequest {
        name: name.into(),
        relay_only,
        ..Default::default()
    };
    let (m1, _) = a.enroll(&req("m1", false), now, &mut OsRng).unwrap();
    let (m2, _) = a.enroll(&req("m2", false), now, &mut OsRng).unwrap();
    let (gone, _) = a.enroll(&req("lost", false), now, &mut OsRng).unwrap();
    let (_relay, _) = a.enroll(&req("relay", true), now, &mut OsRng).unwrap();
    let before = a.descriptor().body.revision;
    let u = a.revoke("lost", now + 10, &mut OsRng).unwrap();
    assert_eq!(u.body.serial, before + 1);
    assert_eq!(u.body.revoked, vec![gone.cert.body.device]);
    assert!(a.descriptor().is_revoked(gone.cert.body.device));
    let sealed: Vec<SealedKey> = u
        .body
        .keys
        .iter()
        .map(|k| SealedKey::from_bytes(k, &a.descriptor().authority).unwrap())
        .collect();
    let to = |channel: u32| -> Vec<u32> {
        sealed
            .iter()
            .filter(|k| k.body.channel == channel)
            .map(|k| {
                assert_eq!(k.body.epoch, 2);
                k.body.device
            })
            .collect()
    };
    assert_eq!(to(1), vec![m1.cert.body.device, m2.cert.body.device]);
    // The plane is re-keyed in the same update, for the relay too.
    assert_eq!(
        to(PLANE_CHANNEL),
        vec![
            m1.cert.body.device,
            m2.cert.body.device,
            _relay.cert.body.device
        ]
    );
    assert_eq!(sealed.len(), 5);
    // The revoked device's key does not open the new epoch's keys.
    let k = SealedKey::from_bytes(&u.body.keys[0], &a.descriptor().authority).unwrap();
    assert!(
        k.open(
            &a.descriptor().domain,
            gone.cert.body.device,
            &gone.secrets.x25519
        )
        .is_err()
    );
    assert!(
        a.revoke("lost", now, &mut OsRng).is_err(),
        "already revoked"
    );
    assert!(a.revoke("nobody", now, &mut OsRng).is_err());
    // A rotation change starts a new epoch too; a rate change does not.
    let rate = PolicyChange {
        rate_per_min: Some(60),
        ..Default::default()
    };
    let u = a
        .set_policy("alerts", &rate, now, &mut OsRng)
        .unwrap()
        .unwrap();
    assert!(u.body.keys.is_empty());
    assert!(
        a.set_policy("alerts", &rate, now, &mut OsRng)
            .unwrap()
            .is_none()
    );
    let rot = PolicyChange {
        rotate_secs: Some(60),
        ..Default::default()
    };
    let u = a
        .set_policy("alerts", &rot, now, &mut OsRng)
        .unwrap()
        .unwrap();
    assert_eq!(u.body.keys.len(), 2);
    assert_eq!(a.descriptor().policy(1).rotate_secs, 60);
}

#[test]
fn a_rekey_seals_nothing_to_an_expired_device() {
    let now = 1_800_000_000;
    let mut a = Authority::create("site", now, &mut OsRng).unwrap();
    let (m1, _) = a
        .enroll(
            &EnrollRequest {
                name: "m1".into(),
                ..Default::default()
            },
            now,
            &mut OsRng,
        )
        .unwrap();
    let (brief, _) = a
        .enroll(
            &EnrollRequest {
                name: "visitor".into(),
                valid_secs: Some(3_600),
                ..Default::default()
            },
            now,
            &mut OsRng,
        )
        .unwrap();
    assert_eq!(brief.cert.body.not_after, now + 3_600);
    a.enroll(
        &EnrollRequest {
            name: "lost".into(),
            ..Default::default()
        },
        now,
        &mut OsRng,
    )
    .unwrap();
    let sealed_to = |u: &crate::update::Update, a: &Authority| -> Vec<(u32, u32)> {
        u.body
            .keys
            .iter()
            .map(|k| SealedKey::from_bytes(k, &a.descriptor().authority).unwrap())
            .map(|k| (k.body.channel, k.body.device))
            .collect()
    };
    // Within its hour the visitor is re-keyed like any member…
    let u = a.revoke("lost", now + 60, &mut OsRng).unwrap();
    let to = sealed_to(&u, &a);
    assert!(to.contains(&(1, brief.cert.body.device)), "{to:?}");
    // …and once it has expired it gets no new key, on a channel or on the plane.
    let (later, _) = a
        .enroll(
            &EnrollRequest {
                name: "m2".into(),
                ..Default::default()
            },
            now + 7_200,
            &mut OsRng,
        )
        .unwrap();
    let u = a.revoke("m2", now + 7_200, &mut OsRng).unwrap();
    let to = sealed_to(&u, &a);
    assert!(to.contains(&(1, m1.cert.body.device)), "{to:?}");
    assert!(to.contains(&(PLANE_CHANNEL, m1.cert.body.device)), "{to:?}");
    assert!(
        to.iter().all(|(_, d)| *d != brief.cert.body.device),
        "sealed to the expired device: {to:?}"
    );
    assert!(to.iter().all(|(_, d)| *d != later.cert.body.device));
}

#[test]
fn plane_epochs_are_sealed_to_every_device_and_only_enabled_once() {
    let now = 1_800_000_000;
    let req = |name: &str, relay_only: bool, force: bool| EnrollRequest {
        name: name.into(),
        relay_only,
        force,
        ..Default::default()
    };
    let plane_keys = |u: &Update, a: &Authority| -> Vec<(u32, u32)> {
        u.body
            .keys
            .iter()
            .map(|k| SealedKey::from_bytes(k, &a.descriptor().authority).unwrap())
            .filter(|k| k.body.channel == PLANE_CHANNEL)
            .map(|k| {
                assert_eq!((k.body.rotate_secs, k.body.period), (0, 0));
                (k.body.device, k.body.epoch)
            })
            .collect()
    };
    // A domain made before the plane existed: no plane key anywhere.
    let mut a = Authority::create_without_plane("old", false, now, &mut OsRng).unwrap();
    assert_eq!(a.plane_epoch(), None);
    let (m, _) = a.enroll(&req("m", false, false), now, &mut OsRng).unwrap();
    let (r, _) = a.enroll(&req("r", true, false), now, &mut OsRng).unwrap();
    assert!(m.sealed.iter().all(|k| k.body.channel != PLANE_CHANNEL));
    assert!(r.sealed.is_empty());
    let e = a.rotate_plane(now, &mut OsRng).unwrap_err().to_string();
    assert!(e.contains("plane --enable"), "{e}");
    // Enabling: epoch 1 to every device, the relay included, in one update.
    let u = a.enable_plane(now, &mut OsRng).unwrap();
    let (md, rd) = (m.cert.body.device, r.cert.body.device);
    assert_eq!(plane_keys(&u, &a), vec![(md, 1), (rd, 1)]);
    assert_eq!(u.body.requires, 0, "nothing before it carried keys");
    let e = a.enable_plane(now, &mut OsRng).unwrap_err().to_string();
    assert!(e.contains("already has a data-plane key (epoch 1)"), "{e}");
    // Later bundles carry the current epoch; a rotation starts the next.
    let (late, _) = a
        .enroll(&req("late", false, false), now, &mut OsRng)
        .unwrap();
    assert!(
        late.sealed
            .iter()
            .any(|k| (k.body.channel, k.body.epoch) == (PLANE_CHANNEL, 1))
    );
    let rot = a.rotate_plane(now, &mut OsRng).unwrap();
    assert_eq!(
        rot.body.requires, u.body.serial,
        "members cannot skip a plane key"
    );
    let ld = late.cert.body.device;
    assert_eq!(plane_keys(&rot, &a), vec![(md, 2), (rd, 2), (ld, 2)]);
    // A forced re-enrolment re-keys the plane without the device it replaces; its new
    // bundle holds the new epoch.
    let (again, _) = a.enroll(&req("r", true, true), now, &mut OsRng).unwrap();
    let forced = a.new_updates().last().unwrap().clone();
    let ad = again.cert.body.device;
    assert_eq!(plane_keys(&forced, &a), vec![(md, 3), (ld, 3), (ad, 3)]);
    assert_eq!(
        again
            .sealed
            .iter()
            .map(|k| (k.body.channel, k.body.epoch))
            .collect::<Vec<_>>(),
        vec![(PLANE_CHANNEL, 3)]
    );
    // The epochs survive saving and loading the directory.
    let dir = tempfile::tempdir().unwrap();
    a.save(dir.path()).unwrap();
    let mut b = Authority::load(dir.path()).unwrap();
    assert_eq!(b.plane_epoch(), Some(3));
    // A new domain has a plane from the start.
    let mut fresh = Authority::create("new", now, &mut OsRng).unwrap();
    assert_eq!(fresh.plane_epoch(), Some(1));
    assert!(fresh.enable_plane(now, &mut OsRng).is_err());
    assert!(b.rotate_plane(now, &mut OsRng).is_ok());
}
