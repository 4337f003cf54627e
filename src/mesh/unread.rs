//! Authentic envelopes this node could not open for want of a key epoch, kept (at most
//! [`MAX_UNREAD`], the oldest dropped first) until an update brings the key and
//! [`Unread::reopen`] shows them.
//!
//! Opening is the node's business: the caller passes it in. Nothing here decrypts, stores
//! or delivers.

use std::collections::VecDeque;

use super::MAX_UNREAD;

/// What the node made of one waiting envelope.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reopened<T> {
    /// Opened: show it.
    Opened(T),
    /// Its epoch is still unknown: it waits again.
    StillUnknown,
    /// It will never open: dropped.
    Dropped,
}

/// Envelopes waiting for a key epoch: (bytes, when the sender's certificate was judged, µs).
/// The instant is kept because reopening judges the envelope at that time again.
#[derive(Debug, Clone, Default)]
pub struct Unread {
    waiting: VecDeque<(Vec<u8>, u64)>,
}

impl Unread {
    /// Keeps an envelope received at `at_us`, dropping the oldest when [`MAX_UNREAD`] wait.
    /// Returns whether one was dropped.
    pub fn push(&mut self, bytes: Vec<u8>, at_us: u64) -> bool {
        let dropped = self.waiting.len() >= MAX_UNREAD;
        if dropped {
            self.waiting.pop_front();
        }
        self.waiting.push_back((bytes, at_us));
        dropped
    }

    /// How many wait.
    pub fn len(&self) -> usize {
        self.waiting.len()
    }

    /// None waits.
    pub fn is_empty(&self) -> bool {
        self.waiting.is_empty()
    }

    /// New keys came: offers every waiting envelope to `open`, oldest first. Returns those
    /// opened, in order; those still unknown wait again, in their order.
    pub fn reopen<T>(&mut self, mut open: impl FnMut(&[u8], u64) -> Reopened<T>) -> Vec<T> {
        let waiting = std::mem::take(&mut self.waiting);
        let mut opened = vec![];
        for (bytes, at) in waiting {
            match open(&bytes, at) {
                Reopened::Opened(t) => opened.push(t),
                Reopened::StillUnknown => self.waiting.push_back((bytes, at)),
                Reopened::Dropped => {}
            }
        }
        opened
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_oldest_is_dropped_beyond_the_bound() {
        let mut u = Unread::default();
        for i in 0..MAX_UNREAD as u64 {
            assert!(!u.push(i.to_be_bytes().to_vec(), i));
        }
        assert!(u.push(b"new".to_vec(), 9999));
        assert_eq!(u.len(), MAX_UNREAD);
        let mut first = None;
        u.reopen(|_, at| {
            first.get_or_insert(at);
            Reopened::<()>::StillUnknown
        });
        assert_eq!(first, Some(1), "envelope 0 was dropped");
        assert_eq!(u.len(), MAX_UNREAD);
    }

    #[test]
    fn reopen_shows_what_opens_and_keeps_what_still_waits() {
        let mut u = Unread::default();
        u.push(b"epoch2".to_vec(), 1);
        u.push(b"epoch3".to_vec(), 2);
        u.push(b"broken".to_vec(), 3);
        u.push(b"epoch2".to_vec(), 4);
        let opened = u.reopen(|b, at| match b {
            b"epoch2" => Reopened::Opened(at),
            b"epoch3" => Reopened::StillUnknown,
            _ => Reopened::Dropped,
        });
        assert_eq!(opened, [1, 4]);
        assert_eq!(u.len(), 1);
        let later = u.reopen(|_, at| Reopened::Opened(at));
        assert_eq!(later, [2], "the received instant is kept");
        assert!(u.is_empty());
    }
}
