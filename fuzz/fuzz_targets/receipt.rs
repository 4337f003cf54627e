//! Receipt plaintexts (proto/receipts.md): any bytes decode or are refused, never a panic; what
//! decodes lists strictly ascending alerts per sender, within the bounds, and re-encodes to
//! the same receipt.
#![no_main]
use libfuzzer_sys::fuzz_target;
use ptt_node::receipt::{MAX_ACK_TEXT, MAX_RECEIPT_IDS, ReceiptBody};

fuzz_target!(|data: &[u8]| {
    let Ok(b) = ReceiptBody::decode(data) else {
        return;
    };
    let opened = b.opened();
    assert!(opened.len() <= MAX_RECEIPT_IDS);
    assert_eq!(opened.len(), b.len());
    assert!(
        opened
            .windows(2)
            .all(|w| (w[0].sender, w[0].seq) < (w[1].sender, w[1].seq))
    );
    assert!(b.acks().iter().all(|a| a.text.len() <= MAX_ACK_TEXT));
    // Re-encoding what decoded decodes to the same receipt.
    assert_eq!(ReceiptBody::decode(&b.encode()).ok(), Some(b));
});
