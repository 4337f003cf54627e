//! Device tags: what a QR code or an NFC tag on a device carries, so another device can find
//! and dial it from the physical world and check it is the device the tag names.
//!
//! ```text
//! ptt://1/<domain id, 64 hex>/<peer id>?fp=<SHA-256 of the certificate, 64 hex>[&n=<name>][&a=<multiaddr>]...
//! ```
//! Values are percent-encoded. The fingerprint pins the exact certificate: a device that
//! answers at the tag's addresses with another certificate is refused. Specified in
//! `proto/tag.md`. Parsing and rendering only; no I/O but [`write_png`].

use std::path::Path;

use libp2p::{Multiaddr, PeerId};
use percent_encoding::{NON_ALPHANUMERIC, percent_decode_str, utf8_percent_encode};

use crate::keys::DomainId;

/// URI scheme and version prefix.
pub const PREFIX: &str = "ptt://1/";
/// Longest tag accepted.
pub const MAX_TAG_LEN: usize = 2048;
/// Addresses a tag carries at most (later ones are ignored when parsing).
pub const MAX_TAG_ADDRESSES: usize = 16;

/// A parsed device tag.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeviceTag {
    /// The device's domain.
    pub domain: DomainId,
    /// Its libp2p peer id.
    pub peer: PeerId,
    /// SHA-256 of its certificate.
    pub fingerprint: [u8; 32],
    /// Its name (informative; the certificate decides).
    pub name: Option<String>,
    /// Where to dial it.
    pub addresses: Vec<Multiaddr>,
}

/// Why a tag is refused.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum TagError {
    /// Not a ptt-node tag of this version.
    #[error("not a ptt-node device tag (it must start with {PREFIX})")]
    Scheme,
    /// Too long.
    #[error("the tag is {0} bytes, more than {MAX_TAG_LEN}")]
    TooLong(usize),
    /// A part is malformed.
    #[error("malformed device tag: {0}")]
    Malformed(String),
}

fn bad(what: impl Into<String>) -> TagError {
    TagError::Malformed(what.into())
}

impl DeviceTag {
    /// The tag as a URI, which [`DeviceTag::parse`] always accepts: at most
    /// [`MAX_TAG_ADDRESSES`] addresses, those that fit in [`MAX_TAG_LEN`] in order, and the
    /// name only if it fits (a QR code or NFC record has room for about 2 KiB).
    pub fn to_uri(&self) -> String {
        let mut s = format!(
            "{PREFIX}{}/{}?fp={}",
            self.domain.to_hex(),
            self.peer,
            hex::encode(self.fingerprint)
        );
        if let Some(n) = &self.name {
            let part = format!("&n={}", utf8_percent_encode(n, NON_ALPHANUMERIC));
            if s.len() + part.len() <= MAX_TAG_LEN {
                s.push_str(&part);
            }
        }
        for a in self.addresses.iter().take(MAX_TAG_ADDRESSES) {
            let part = format!(
                "&a={}",
                utf8_percent_encode(&a.to_string(), NON_ALPHANUMERIC)
            );
            if s.len() + part.len() > MAX_TAG_LEN {
                break;
            }
            s.push_str(&part);
        }
        s
    }

    /// Parses a tag URI.
    pub fn parse(uri: &str) -> Result<Self, TagError> {
        let uri = uri.trim();
        if uri.len() > MAX_TAG_LEN {
            return Err(TagError::TooLong(uri.len()));
        }
        let rest = uri.strip_prefix(PREFIX).ok_or(TagError::Scheme)?;
        let (path, query) = rest.split_once('?').ok_or_else(|| bad("no ?fp="))?;
        let (domain, peer) = path
            .split_once('/')
            .ok_or_else(|| bad("expected DOMAIN/PEER"))?;
        let d = hex::decode(domain).map_err(|_| bad("domain id is not hex"))?;
        let domain = DomainId(d.try_into().map_err(|_| bad("domain id is not 32 bytes"))?);
        let peer: PeerId = peer.parse().map_err(|_| bad("bad peer id"))?;
        let mut fingerprint = None;
        let mut name = None;
        let mut addresses = vec![];
        for kv in query.split('&') {
            let (k, v) = kv.split_once('=').ok_or_else(|| bad(format!("{kv:?}")))?;
            let v = percent_decode_str(v)
                .decode_utf8()
                .map_err(|_| bad("bad percent-encoding"))?;
            match k {
                "fp" => {
                    let f = hex::decode(v.as_ref()).map_err(|_| bad("fingerprint is not hex"))?;
                    fingerprint = Some(
                        <[u8; 32]>::try_from(f.as_slice())
                            .map_err(|_| bad("fingerprint is not 32 bytes"))?,
                    );
                }
                "n" => name = Some(v.into_owned()),
                "a" if addresses.len() < MAX_TAG_ADDRESSES => {
                    addresses.push(v.parse().map_err(|_| bad(format!("bad address {v:?}")))?)
                }
                "a" => {}
                // Unknown keys are for later versions of the tag.
                _ => {}
            }
        }
        Ok(DeviceTag {
            domain,
            peer,
            fingerprint: fingerprint.ok_or_else(|| bad("no fingerprint"))?,
            name,
            addresses,
        })
    }
}

/// The QR code of `text` drawn with Unicode half blocks, for a terminal.
pub fn qr_terminal(text: &str) -> Result<String, String> {
    let code = qrcode::QrCode::new(text.as_bytes()).map_err(|e| e.to_string())?;
    Ok(code
        .render::<qrcode::render::unicode::Dense1x2>()
        .dark_color(qrcode::render::unicode::Dense1x2::Light)
        .light_color(qrcode::render::unicode::Dense1x2::Dark)
        .build())
}

/// Writes the QR code of `text` as a black-on-white PNG, 8 pixels a module, 4 modules of
/// quiet zone.
pub fn write_png(text: &str, path: &Path) -> Result<(), String> {
    let code = qrcode::QrCode::new(text.as_bytes()).map_err(|e| e.to_string())?;
    let (w, colors) = (code.width(), code.to_colors());
    let (scale, quiet) = (8usize, 4usize);
    let side = (w + 2 * quiet) * scale;
    let mut pixels = vec![255u8; side * side];
    for (i, c) in colors.iter().enumerate() {
        if *c == qrcode::Color::Dark {
            let (x, y) = ((i % w + quiet) * scale, (i / w + quiet) * scale);
            for dy in 0..scale {
                let row = (y + dy) * side;
                pixels[row + x..row + x + scale].fill(0);
            }
        }
    }
    let file = std::fs::File::create(path).map_err(|e| format!("{}: {e}", path.display()))?;
    let side32 = u32::try_from(side).map_err(|e| e.to_string())?;
    let mut enc = png::Encoder::new(std::io::BufWriter::new(file), side32, side32);
    enc.set_color(png::ColorType::Grayscale);
    enc.set_depth(png::BitDepth::Eight);
    let mut writer = enc
        .write_header()
        .map_err(|e| format!("{}: {e}", path.display()))?;
    writer
        .write_image_data(&pixels)
        .map_err(|e| format!("{}: {e}", path.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tag() -> DeviceTag {
        DeviceTag {
            domain: DomainId([7; 32]),
            peer: PeerId::random(),
            fingerprint: [9; 32],
            name: Some("cam 1/north".into()),
            addresses: vec![
                "/ip4/10.0.0.5/tcp/4001".parse().unwrap(),
                "/ip6/fe80::1/tcp/4001".parse().unwrap(),
            ],
        }
    }

    #[test]
    fn round_trip_and_refusals() {
        let t = tag();
        let uri = t.to_uri();
        assert!(uri.starts_with(PREFIX));
        assert_eq!(DeviceTag::parse(&uri).unwrap(), t);
        assert_eq!(
            DeviceTag::parse("https://example.org"),
            Err(TagError::Scheme)
        );
        assert!(DeviceTag::parse(&uri.replace("fp=", "xx=")).is_err());
        assert!(DeviceTag::parse(&uri.replace("/ip4", "/nope")).is_err() || !uri.contains("/ip4"));
        let short_fp = uri.replacen(&hex::encode([9u8; 32]), "0909", 1);
        assert!(DeviceTag::parse(&short_fp).is_err());
        assert!(matches!(
            DeviceTag::parse(&"x".repeat(3000)),
            Err(TagError::TooLong(_))
        ));
    }

    /// Found by the `tag` fuzz target: a tag near the length limit parsed, but printed again
    /// (names and addresses percent-encoded) it was too long to parse.
    #[test]
    fn printed_tags_always_parse() {
        let mut t = tag();
        t.addresses = (0..40)
            .map(|i| format!("/ip4/10.0.0.{i}/tcp/4001").parse().unwrap())
            .collect();
        let uri = t.to_uri();
        let back = DeviceTag::parse(&uri).unwrap();
        assert_eq!(back.addresses, t.addresses[..MAX_TAG_ADDRESSES]);
        assert_eq!(back.name, t.name);

        t.name = Some("-".repeat(700)); // 2,100 bytes percent-encoded
        let uri = t.to_uri();
        assert!(uri.len() <= MAX_TAG_LEN);
        let back = DeviceTag::parse(&uri).unwrap();
        assert_eq!(back.name, None, "a name that cannot fit is left out");
        assert_eq!(back.addresses, t.addresses[..MAX_TAG_ADDRESSES]);

        t.name = Some("-".repeat(500)); // 1,500 bytes: fits, with room for some addresses only
        let back = DeviceTag::parse(&t.to_uri()).unwrap();
        assert_eq!(back.name, t.name);
        assert!(!back.addresses.is_empty() && back.addresses.len() < MAX_TAG_ADDRESSES);
        assert_eq!(back.addresses, t.addresses[..back.addresses.len()]);
    }

    #[test]
    fn qr_renders() {
        let uri = tag().to_uri();
        let t = qr_terminal(&uri).unwrap();
        assert!(t.lines().count() > 20);
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("tag.png");
        write_png(&uri, &p).unwrap();
        let bytes = std::fs::read(&p).unwrap();
        assert_eq!(&bytes[1..4], b"PNG");
    }
}
