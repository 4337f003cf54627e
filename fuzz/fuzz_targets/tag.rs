//! Device tags: the text of a QR code or NFC record, read from the physical world.
#![no_main]
use libfuzzer_sys::fuzz_target;
use ptt_node::tag::{DeviceTag, MAX_TAG_ADDRESSES, MAX_TAG_LEN};

/// Length of `s` percent-encoded as `to_uri` does (every byte but ASCII letters and digits).
fn encoded_len(s: &str) -> usize {
    s.bytes().map(|b| if b.is_ascii_alphanumeric() { 1 } else { 3 }).sum()
}

fuzz_target!(|data: &[u8]| {
    if let Ok(s) = std::str::from_utf8(data)
        && let Ok(tag) = DeviceTag::parse(s)
    {
        // What parses prints back as a URI that parses, to the same tag but for what did not
        // fit: the name may be left out and the addresses cut short (never reordered), and only
        // when the next part would have made the tag too long.
        let uri = tag.to_uri();
        assert!(uri.len() <= MAX_TAG_LEN);
        let again = DeviceTag::parse(&uri).expect("a printed tag parses");
        assert_eq!(
            (again.domain, again.peer, again.fingerprint),
            (tag.domain, tag.peer, tag.fingerprint)
        );
        match (&tag.name, &again.name) {
            (a, b) if a == b => {}
            (Some(n), None) => {
                let before_addresses = uri.split("&a=").next().unwrap_or("").len();
                assert!(before_addresses + 3 + encoded_len(n) > MAX_TAG_LEN, "name left out");
            }
            (a, b) => panic!("name {a:?} printed back as {b:?}"),
        }
        assert!(tag.addresses.starts_with(&again.addresses));
        let kept = tag.addresses.len().min(MAX_TAG_ADDRESSES);
        if again.addresses.len() < kept {
            let next = tag.addresses[again.addresses.len()].to_string();
            assert!(uri.len() + 3 + encoded_len(&next) > MAX_TAG_LEN, "address left out");
        }
    }
});
