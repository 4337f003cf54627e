use super::*;
use crate::alert::Via;

fn received() -> ReceivedAlert {
    ReceivedAlert {
        id: "00c0ffee00c0ffee".into(),
        channel: "alerts".into(),
        sender: "cam-1".into(),
        sender_peer_id: "12D3KooWtest".into(),
        sender_device: 2,
        seq: 9,
        severity: Severity::Severe,
        kind: "intrusion".into(),
        text: "Gate <B> & fence\nsecond line".into(),
        created_at_us: 1_795_000_000_123_456,
        received_at_us: 1_795_000_000_200_000,
        location: Some(Location {
            lat: 37.5665,
            lon: 126.978,
        }),
        attributes: vec![
            ("zone".into(), "north".into()),
            (attr::URGENCY.into(), "Immediate".into()),
            (attr::AREA.into(), "North gate".into()),
        ],
        recipient: None,
        claimed_severity: None,
        via: Via::Gossip,
        late: false,
        msg_type: Default::default(),
        references: None,
        state: None,
    }
}

#[test]
fn an_alert_maps_onto_cap_fields() {
    let x = to_cap(&received(), "site a");
    for want in [
        "<alert xmlns=\"urn:oasis:names:tc:emergency:cap:1.2\">",
        "<identifier>ptt-node:site-a:00c0ffee00c0ffee</identifier>",
        "<sender>cam-1@site-a</sender>",
        "<sent>2026-11-18T11:06:40-00:00</sent>",
        "<status>Actual</status>",
        "<scope>Restricted</scope>",
        "<restriction>members of ptt-node domain site a reading channel alerts</restriction>",
        "<event>intrusion</event>",
        "<urgency>Immediate</urgency>",
        "<severity>Severe</severity>",
        "<certainty>Observed</certainty>",
        "<headline>Gate &lt;B&gt; &amp; fence</headline>",
        "<description>Gate &lt;B&gt; &amp; fence\nsecond line</description>",
        "<valueName>zone</valueName>\n      <value>north</value>",
        "<areaDesc>North gate</areaDesc>",
        "<circle>37.56650,126.97800 0</circle>",
    ] {
        assert!(x.contains(want), "{want} missing from\n{x}");
    }
    assert!(
        !x.contains("cap:urgency"),
        "carried attributes are not parameters: {x}"
    );
    // A directed message is private to its recipient.
    let mut d = received();
    d.recipient = Some("guard 2".into());
    let x = to_cap(&d, "s");
    assert!(
        x.contains("<scope>Private</scope>\n  <addresses>&quot;guard 2&quot;</addresses>"),
        "{x}"
    );
}

#[test]
fn characters_xml_cannot_carry_are_replaced() {
    let mut a = received();
    a.text = "bell\u{7}nul\u{0}tab\tok\u{FFFF}".into();
    let x = to_cap(&a, "d");
    assert!(x.contains("bell\u{FFFD}nul\u{FFFD}tab\tok\u{FFFD}"), "{x}");
    // And it reads back.
    assert!(from_cap(&x).is_ok());
}

#[test]
fn a_document_round_trips_into_the_same_alert_body() {
    let a = received();
    let body = from_cap(&to_cap(&a, "site")).unwrap();
    assert_eq!(body.severity, a.severity);
    assert_eq!(body.kind, a.kind);
    assert_eq!(body.text, a.text);
    let l = body.location.unwrap();
    assert!((l.lat - 37.5665).abs() < 1e-5 && (l.lon - 126.978).abs() < 1e-5);
    let get = |k: &str| attribute(&body.attributes, k).map(str::to_string);
    assert_eq!(get("zone").as_deref(), Some("north"));
    assert_eq!(get(attr::URGENCY).as_deref(), Some("Immediate"));
    assert_eq!(get(attr::AREA).as_deref(), Some("North gate"));
    assert_eq!(
        get(attr::IDENTIFIER).as_deref(),
        Some("ptt-node:site:00c0ffee00c0ffee")
    );
    assert_eq!(
        get(attr::SENT).as_deref(),
        Some("2026-11-18T11:06:40-00:00")
    );
    // Defaults are not kept, nor the copy's own ptt:* parameters.
    assert_eq!(get(attr::STATUS), None);
    assert_eq!(get(attr::CERTAINTY), None);
    assert!(body.attributes.iter().all(|(k, _)| !k.starts_with("ptt:")));
}

const MINIMAL: &str = r#"<?xml version="1.0" encoding="UTF-8"?>
<cap:alert xmlns:cap="urn:oasis:names:tc:emergency:cap:1.2">
  <cap:identifier>X-1</cap:identifier><cap:sender>a@b</cap:sender>
  <cap:sent>2026-11-22T10:00:00+09:00</cap:sent>
  <cap:status>Exercise</cap:status><cap:msgType>Alert</cap:msgType><cap:scope>Public</cap:scope>
  <cap:info><cap:category>Fire</cap:category><cap:event>smoke &#x26; heat</cap:event>
    <cap:urgency>Expected</cap:urgency><cap:severity>Moderate</cap:severity>
    <cap:certainty>Likely</cap:certainty><cap:headline><![CDATA[Smoke <2F>]]></cap:headline>
    <cap:area><cap:areaDesc>Hall</cap:areaDesc>
      <cap:polygon>10,20 10,21 11,21 10,20</cap:polygon></cap:area>
    <cap:area><cap:areaDesc>Other</cap:areaDesc><cap:circle>1,1 2</cap:circle></cap:area>
  </cap:info>
  <cap:info><cap:event>second language</cap:event><cap:severity>Minor</cap:severity></cap:info>
</cap:alert>"#;

#[test]
fn a_prefixed_document_from_elsewhere_reads() {
    let b = from_cap(MINIMAL).unwrap();
    assert_eq!(b.kind, "smoke & heat");
    assert_eq!(b.severity, Severity::Moderate);
    assert_eq!(
        b.text, "Smoke <2F>",
        "the headline when there is no description"
    );
    assert_eq!(
        b.location,
        Some(Location {
            lat: 10.0,
            lon: 20.0
        })
    );
    let get = |k: &str| attribute(&b.attributes, k).map(str::to_string);
    assert_eq!(get(attr::STATUS).as_deref(), Some("Exercise"));
    assert_eq!(get(attr::CATEGORY).as_deref(), Some("Fire"));
    assert_eq!(get(attr::AREA).as_deref(), Some("Hall"));
}

#[test]
fn an_update_or_a_cancel_written_by_listen_names_its_alert_when_read() {
    let original = received();
    // What `listen --format cap` wrote for an update of `original`, then a cancel.
    let mut u = received();
    u.id = "1111222233334444".into();
    u.text = "one person, leaving".into();
    u.msg_type = crate::alert::MsgType::Update;
    u.references = Some(crate::alert::Referenced {
        id: original.id.clone(),
        sender: original.sender.clone(),
        sender_device: original.sender_device,
        created_at_us: original.created_at_us,
    });
    let x = to_cap(&u, "site a");
    match message_from_cap(&x).unwrap() {
        CapMessage::Update { id, body } => {
            assert_eq!(id, original.id);
            assert_eq!(body.text, "one person, leaving");
        }
        other => panic!("{other:?}"),
    }
    let mut c = u.clone();
    c.msg_type = crate::alert::MsgType::Cancel;
    c.text = "false alarm".into();
    let x = to_cap(&c, "site a");
    assert_eq!(
        message_from_cap(&x).unwrap(),
        CapMessage::Cancel {
            id: original.id.clone(),
            text: "false alarm".into()
        }
    );
    // A cancellation needs no <info>.
    let bare = format!(
        "<alert xmlns=\"{NAMESPACE}\"><status>Actual</status><msgType>Cancel</msgType>\
             <references>desk@x,ptt-node:x:{},2026-01-01T00:00:00-00:00</references></alert>",
        original.id
    );
    assert_eq!(
        message_from_cap(&bare).unwrap(),
        CapMessage::Cancel {
            id: original.id.clone(),
            text: String::new()
        }
    );
    // An update of another system's message is a new alert here.
    let foreign = x
        .replace("<msgType>Cancel", "<msgType>Update")
        .replace(&format!("ptt-node:site-a:{}", original.id), "NWS-1234");
    assert!(
        matches!(message_from_cap(&foreign).unwrap(), CapMessage::Alert(_)),
        "{foreign}"
    );
    // One change names one alert; the same alert twice is one.
    let twice = bare.replace(
        "</references>",
        &format!(
            " a@x,ptt-node:x:{},2026-01-01T00:00:00-00:00</references>",
            original.id
        ),
    );
    assert!(matches!(
        message_from_cap(&twice).unwrap(),
        CapMessage::Cancel { .. }
    ));
    let two = bare.replace(
        "</references>",
        " a@x,ptt-node:x:00000000000000aa,2026-01-01T00:00:00-00:00</references>",
    );
    let m = message_from_cap(&two).unwrap_err().to_string();
    assert!(m.contains("names 2 ptt-node alerts"), "{m}");
    // Not an id (upper case, the wrong length, no domain), or not a whole triple: an error,
    // not a document that silently changes nothing.
    for bad in [
        "ptt-node:x:00C0FFEE00C0FFEE",
        "ptt-node:x:00c0ffee",
        "ptt-node:00c0ffee00c0ffee",
    ] {
        let d = bare.replace(&format!("ptt-node:x:{}", original.id), bad);
        assert!(
            matches!(message_from_cap(&d), Err(CapError::BadReference(_))),
            "{bad}"
        );
        let u = d.replace("<msgType>Cancel", "<msgType>Update");
        assert!(
            matches!(message_from_cap(&u), Err(CapError::BadReference(_))),
            "{bad}"
        );
    }
    let spaced = bare.replace(",ptt-node:x:", ", ptt-node:x:");
    assert!(matches!(
        message_from_cap(&spaced),
        Err(CapError::BadReference(_))
    ));
    // A test, exercise or draft message changes no live alert.
    for status in ["Test", "Exercise", "Draft"] {
        let t = bare.replace("<status>Actual", &format!("<status>{status}"));
        let m = message_from_cap(&t).unwrap_err().to_string();
        assert!(m.contains("only an Actual message"), "{m}");
    }
    // A reason too long for one alert is refused here.
    let long = bare.replace(
        "</alert>",
        &format!(
            "<info><event>x</event><severity>Minor</severity><description>{}</description></info></alert>",
            "a".repeat(MAX_ALERT_LEN)
        ),
    );
    assert!(matches!(
        message_from_cap(&long),
        Err(CapError::TooLarge(_))
    ));
}

#[test]
fn bad_documents_say_what_is_wrong() {
    let e = |x: &str| from_cap(x).unwrap_err().to_string();
    assert!(e("").contains("not a CAP 1.2 alert"), "{}", e(""));
    assert!(e("<alert>").contains("no namespace"), "{}", e("<alert>"));
    let v11 =
        r#"<alert xmlns="urn:oasis:names:tc:emergency:cap:1.1"><status>Actual</status></alert>"#;
    assert!(e(v11).contains("cap:1.1"), "{}", e(v11));
    let broken = format!("<alert xmlns=\"{NAMESPACE}\"><status></alert>");
    assert!(e(&broken).contains("not well-formed"), "{}", e(&broken));
    let with = |inner: &str| {
        format!(
            r#"<alert xmlns="urn:oasis:names:tc:emergency:cap:1.2"><status>Actual</status><msgType>Alert</msgType>{inner}</alert>"#
        )
    };
    assert!(
        e(&with("")).contains("<info> is missing"),
        "{}",
        e(&with(""))
    );
    assert!(e(&with("<info><severity>Minor</severity></info>")).contains("<event> is missing"));
    let bad = e(&with(
        "<info><event>x</event><severity>Huge</severity></info>",
    ));
    assert!(
        bad.contains("<severity> is \"Huge\"") && bad.contains("Extreme"),
        "{bad}"
    );
    let bad = e(&with(
        "<info><event>x</event><severity>Minor</severity><area><areaDesc>a</areaDesc><circle>95,0 1</circle></area></info>",
    ));
    assert!(bad.contains("<circle>"), "{bad}");
    let cancel = MINIMAL.replace("<cap:msgType>Alert", "<cap:msgType>Cancel");
    assert!(e(&cancel).contains("<msgType> is Cancel"), "{}", e(&cancel));
    // A cancellation that names no ptt-node alert has nothing to cancel.
    let m = message_from_cap(&cancel).unwrap_err().to_string();
    assert!(m.contains("names no ptt-node alert"), "{m}");
    let ack = MINIMAL.replace("<cap:msgType>Alert", "<cap:msgType>Ack");
    let m = message_from_cap(&ack).unwrap_err().to_string();
    assert!(m.contains("<msgType> is Ack"), "{m}");
    let ent = with("<info><event>&xxe;</event><severity>Minor</severity></info>");
    assert!(e(&ent).contains("unknown entity"), "{}", e(&ent));
    let big = with(&format!(
        "<info><event>x</event><severity>Minor</severity><description>{}</description></info>",
        "a".repeat(MAX_ALERT_LEN)
    ));
    assert!(e(&big).contains("at most"), "{}", e(&big));
}

#[test]
fn cut_short_doubled_and_edge_documents() {
    let e = |x: &str| from_cap(x).unwrap_err().to_string();
    let cut = &MINIMAL[..MINIMAL.find("</cap:info>").unwrap()];
    assert!(e(cut).contains("cut short"), "{}", e(cut));
    let twice = format!(
        "{MINIMAL}{}",
        &MINIMAL[MINIMAL.find("<cap:alert").unwrap()..]
    );
    assert!(e(&twice).contains("second root"), "{}", e(&twice));
    // An empty description falls back to the headline; cap:* parameters cannot set
    // the mapping's own attributes; a circle's radius is kept.
    let doc = MINIMAL
            .replace("<cap:area><cap:areaDesc>Hall</cap:areaDesc>\n      <cap:polygon>10,20 10,21 11,21 10,20</cap:polygon></cap:area>", "<cap:area><cap:areaDesc>Hall</cap:areaDesc><cap:circle>10,20 0.25</cap:circle></cap:area>")
            .replace(
                "<cap:headline>",
                "<cap:description></cap:description><cap:parameter><cap:valueName>cap:status</cap:valueName><cap:value>Actual</cap:value></cap:parameter><cap:headline>",
            );
    let b = from_cap(&doc).unwrap();
    assert_eq!(b.text, "Smoke <2F>");
    assert_eq!(attribute(&b.attributes, attr::STATUS), Some("Exercise"));
    assert_eq!(
        b.attributes
            .iter()
            .filter(|(k, _)| k == attr::STATUS)
            .count(),
        1
    );
    assert_eq!(attribute(&b.attributes, attr::RADIUS_KM), Some("0.25"));
    let mut a = received();
    a.attributes = b.attributes.clone();
    assert!(to_cap(&a, "d").contains("<circle>37.56650,126.97800 0.25</circle>"));
}

#[test]
fn times_beyond_year_9999_and_bad_locations_still_give_valid_cap() {
    let mut a = received();
    a.created_at_us = u64::MAX;
    a.location = Some(Location {
        lat: f64::NAN,
        lon: 0.0,
    });
    let x = to_cap(&a, "d");
    assert!(x.contains("<sent>9999-12-31T23:59:59-00:00</sent>"), "{x}");
    assert!(!x.contains("<area>"), "{x}");
    a.location = Some(Location {
        lat: 91.0,
        lon: 0.0,
    });
    assert!(!to_cap(&a, "d").contains("<area>"));
}

proptest::proptest! {
    #[test]
    fn any_input_gives_an_answer_not_a_panic(s in ".{0,400}") {
        let _ = from_cap(&s);
        let doc = format!("<alert xmlns=\"{NAMESPACE}\"><status>Actual</status><msgType>Alert</msgType><info><event>{s}</event><severity>Minor</severity></info></alert>");
        let _ = from_cap(&doc);
    }

    #[test]
    fn any_text_round_trips_as_xml_can_carry_it(text in ".{0,200}", kind in "[a-z]{1,12}") {
        let mut a = received();
        a.text = text.clone();
        a.kind = kind.clone();
        let b = from_cap(&to_cap(&a, "d")).unwrap();
        // XML normalises \r\n to \n; trimming removes surrounding white space.
        let want: String = text
            .replace("\r\n", "\n")
            .replace('\r', "\n")
            .chars()
            .map(|c| if ((c as u32) < 0x20 && !"\t\n".contains(c)) || c == '\u{FFFE}' || c == '\u{FFFF}' { '\u{FFFD}' } else { c })
            .collect();
        let got = if want.trim().is_empty() { String::new() } else { b.text.clone() };
        proptest::prop_assert_eq!(got, if want.trim().is_empty() { String::new() } else { want.trim().to_string() });
        proptest::prop_assert_eq!(b.kind, kind);
    }
}
