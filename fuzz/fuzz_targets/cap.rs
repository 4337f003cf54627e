//! CAP 1.2 documents given to `ptt-node alert --cap`: any input gives an alert body (or an
//! update or cancellation of an alert) or an error, never a panic; what is accepted, written
//! back as CAP, reads again to the same fields.
#![no_main]
use libfuzzer_sys::fuzz_target;
use ptt_node::alert::{ReceivedAlert, Via};
use ptt_node::cap::{CapMessage, from_cap, message_from_cap, to_cap};

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    // What an Update or a Cancel refers to: never a panic; a body read as from_cap reads it;
    // an id of 16 lower-case hex digits.
    let hex16 =
        |id: &str| id.len() == 16 && id.bytes().all(|c| matches!(c, b'0'..=b'9' | b'a'..=b'f'));
    match message_from_cap(text) {
        Ok(CapMessage::Alert(b)) => assert_eq!(from_cap(text).ok(), Some(b)),
        Ok(CapMessage::Update { id, body }) => {
            assert!(hex16(&id));
            assert_eq!(from_cap(text).ok(), Some(body));
        }
        Ok(CapMessage::Cancel { id, .. }) => assert!(hex16(&id)),
        Err(_) => {}
    }
    let Ok(body) = from_cap(text) else {
        return;
    };
    let a = ReceivedAlert {
        id: "0000000000000001".into(),
        channel: "alerts".into(),
        sender: "fuzz".into(),
        sender_peer_id: "p".into(),
        sender_device: 1,
        seq: 1,
        severity: body.severity,
        kind: body.kind.clone(),
        text: body.text.clone(),
        created_at_us: 1,
        received_at_us: 2,
        location: body.location,
        attributes: body.attributes.clone(),
        recipient: None,
        claimed_severity: None,
        via: Via::Gossip,
        late: false,
        msg_type: Default::default(),
        references: None,
        state: None,
    };
    let again = from_cap(&to_cap(&a, "d")).expect("a written document reads again");
    assert_eq!(again.severity, body.severity);
    assert!(!again.kind.trim().is_empty());
});
