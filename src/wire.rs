//! Postcard encoding helpers with the bounds every decoder on this wire must respect.
//!
//! Everything that crosses a trust boundary is decoded here: the length is checked before
//! any parsing, and trailing bytes are an error. (postcard accepts non-minimal varints, so
//! one value may have more than one encoding: signatures always cover the raw bytes.)

use serde::Serialize;
use serde::de::{self, Deserialize, DeserializeOwned, Deserializer, SeqAccess, Visitor};

/// Largest envelope accepted from the network (64 KiB); larger ones are dropped undecoded.
pub const MAX_ENVELOPE_LEN: usize = 64 * 1024;
/// Largest certificate accepted (4 KiB).
pub const MAX_CERT_LEN: usize = 4 * 1024;

/// Why bytes could not be decoded.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum DecodeError {
    /// The input is longer than this kind of value may be.
    #[error("{what} is {len} bytes, more than the {max} allowed")]
    TooLong {
        /// What was being decoded.
        what: &'static str,
        /// Its length.
        len: usize,
        /// The limit.
        max: usize,
    },
    /// The bytes are not a valid encoding.
    #[error("{what} is malformed: {reason}")]
    Malformed {
        /// What was being decoded.
        what: &'static str,
        /// Postcard's description.
        reason: String,
    },
    /// A valid value is followed by more bytes.
    #[error("{what} has {extra} trailing bytes")]
    Trailing {
        /// What was being decoded.
        what: &'static str,
        /// How many bytes were left over.
        extra: usize,
    },
    /// The value decodes but is not of a version this build understands.
    #[error("{what} has version {found}, this build understands version {expected}")]
    Version {
        /// What was being decoded.
        what: &'static str,
        /// Version in the input.
        found: u8,
        /// Version this build speaks.
        expected: u8,
    },
}

/// Encodes a value with postcard. Encoding into a `Vec` cannot fail for our types.
pub fn encode<T: Serialize + ?Sized>(value: &T) -> Vec<u8> {
    // postcard only fails on unsupported serde features (none used) or a full fixed buffer.
    postcard::to_stdvec(value).unwrap_or_default()
}

/// Decodes exactly one `T` from `bytes`, which must be at most `max` long.
pub fn decode<T: DeserializeOwned>(
    what: &'static str,
    bytes: &[u8],
    max: usize,
) -> Result<T, DecodeError> {
    if bytes.len() > max {
        return Err(DecodeError::TooLong {
            what,
            len: bytes.len(),
            max,
        });
    }
    let (value, rest) =
        postcard::take_from_bytes::<T>(bytes).map_err(|e| DecodeError::Malformed {
            what,
            reason: e.to_string(),
        })?;
    if !rest.is_empty() {
        return Err(DecodeError::Trailing {
            what,
            extra: rest.len(),
        });
    }
    Ok(value)
}

/// Decodes a sequence of at most `N` elements, for `#[serde(deserialize_with = ...)]` on every
/// list a peer sends: a longer one is refused at its length prefix, before anything is
/// allocated for it. Without this, a frame's size alone bounds nothing: a list of empty byte
/// strings costs one byte each on the wire and 24 bytes each decoded. The encoding does not
/// change; conforming peers never send more than `N`.
pub fn bounded<'de, const N: usize, D, T>(d: D) -> Result<Vec<T>, D::Error>
where
    D: Deserializer<'de>,
    T: Deserialize<'de>,
{
    struct AtMost<const N: usize, T>(std::marker::PhantomData<T>);

    impl<'de, const N: usize, T: Deserialize<'de>> Visitor<'de> for AtMost<N, T> {
        type Value = Vec<T>;

        fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
            write!(f, "a sequence of at most {N} elements")
        }

        fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Vec<T>, A::Error> {
            let hint = seq.size_hint().unwrap_or(0);
            if hint > N {
                return Err(de::Error::invalid_length(hint, &self));
            }
            // Nothing is taken on trust: the hint is the peer's claim, capped at N.
            let mut v = Vec::with_capacity(hint.min(N));
            while let Some(x) = seq.next_element()? {
                if v.len() == N {
                    return Err(de::Error::invalid_length(N + 1, &self));
                }
                v.push(x);
            }
            Ok(v)
        }
    }

    d.deserialize_seq(AtMost::<N, T>(std::marker::PhantomData))
}

/// Lower-case hex of a byte string.
pub fn hex(bytes: &[u8]) -> String {
    hex::encode(bytes)
}
