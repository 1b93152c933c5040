//! The byte codec of snapshot sections: little-endian fixed-width integers, length-prefixed
//! byte strings, and places of log entries (`format-spec/snapshot.md`, "Section encoding").
//!
//! [`Enc`] appends to one growing buffer and never fails. A place whose entry is not durable yet
//! is written as a placeholder (segment 0, the entry's LSN) and listed in [`Enc::pending`]; the
//! snapshot writer replaces every placeholder with the entry's real place once it is durable, so
//! a snapshot file never holds one. [`Dec`] reads the same layout back and fails with a message
//! naming what it was reading on any short or inconsistent input: decoding is fed bytes from
//! the disk and must never panic.

use std::collections::BTreeMap;

/// Bytes of an encoded place: u64 segment (first LSN of the segment), u64 offset.
pub const PLACE_BYTES: usize = 16;

/// What [`Enc::finish`] hands back: the bytes, the placeholders (offset, LSN) and the live
/// bytes per segment.
pub type Finished = (Vec<u8>, Vec<(usize, u64)>, BTreeMap<u64, u64>);

/// A section being encoded.
#[derive(Default)]
pub struct Enc {
    buf: Vec<u8>,
    /// (offset of a placeholder place in `buf`, the entry's LSN).
    pending: Vec<(usize, u64)>,
    /// Bytes of the entries this section's places point at, per segment (by its first LSN):
    /// what compaction must copy to free the segment.
    live: BTreeMap<u64, u64>,
}

impl Enc {
    pub fn new() -> Self {
        Enc::default()
    }
    pub fn u8(&mut self, v: u8) {
        self.buf.push(v);
    }
    pub fn bool(&mut self, v: bool) {
        self.buf.push(u8::from(v));
    }
    pub fn u16(&mut self, v: u16) {
        self.buf.extend_from_slice(&v.to_le_bytes());
    }
    pub fn u32(&mut self, v: u32) {
        self.buf.extend_from_slice(&v.to_le_bytes());
    }
    pub fn u64(&mut self, v: u64) {
        self.buf.extend_from_slice(&v.to_le_bytes());
    }
    pub fn i64(&mut self, v: i64) {
        self.buf.extend_from_slice(&v.to_le_bytes());
    }
    /// An `f64` by its IEEE-754 bits (NaN payloads and -0.0 survive).
    pub fn f64(&mut self, v: f64) {
        self.u64(v.to_bits());
    }
    /// A count of items that follow (u64).
    pub fn count(&mut self, n: usize) {
        self.u64(n as u64);
    }
    /// u32 length, then the bytes.
    pub fn bytes(&mut self, b: &[u8]) {
        let n = u32::try_from(b.len()).expect("snapshot strings are shorter than 4 GiB");
        self.u32(n);
        self.buf.extend_from_slice(b);
    }
    pub fn str(&mut self, s: &str) {
        self.bytes(s.as_bytes());
    }
    /// The place of a durable entry: the first LSN of its segment and its offset there.
    /// `stored_bytes` (the entry's bytes with padding) counts as live in that segment.
    pub fn place(&mut self, segment: u64, offset: u64, stored_bytes: u64) {
        debug_assert!(segment > 0, "segments start at LSN 1 or later");
        self.u64(segment);
        self.u64(offset);
        *self.live.entry(segment).or_default() += stored_bytes;
    }
    /// Bytes already laid out by the caller in this encoding.
    pub fn raw(&mut self, b: &[u8]) {
        self.buf.extend_from_slice(b);
    }
    /// A place, as [`Enc::place`], whose live bytes the caller counts itself (with
    /// [`Enc::add_live`]: once per segment is cheaper than once per place).
    pub fn place_uncounted(&mut self, segment: u64, offset: u64) {
        debug_assert!(segment > 0, "segments start at LSN 1 or later");
        let mut p = [0u8; PLACE_BYTES];
        p[..8].copy_from_slice(&segment.to_le_bytes());
        p[8..].copy_from_slice(&offset.to_le_bytes());
        self.buf.extend_from_slice(&p);
    }
    /// Counts `bytes` live in `segment`.
    pub fn add_live(&mut self, segment: u64, bytes: u64) {
        *self.live.entry(segment).or_default() += bytes;
    }
    /// Room for `bytes` more without reallocating.
    pub fn reserve(&mut self, bytes: usize) {
        self.buf.reserve(bytes);
    }
    /// The place of the entry with this LSN, which is not durable yet: a placeholder the
    /// snapshot writer fills in once the entry is durable.
    pub fn pending_place(&mut self, lsn: u64) {
        self.pending.push((self.buf.len(), lsn));
        self.u64(0);
        self.u64(lsn);
    }
    pub fn len(&self) -> usize {
        self.buf.len()
    }
    pub fn is_empty(&self) -> bool {
        self.buf.is_empty()
    }
    /// The placeholders written so far: (offset in the buffer, LSN).
    pub fn pending(&self) -> &[(usize, u64)] {
        &self.pending
    }
    /// Live bytes per segment of the places written so far (placeholders excluded).
    pub fn live(&self) -> &BTreeMap<u64, u64> {
        &self.live
    }
    /// Appends another encoding as bytes (a `u32` length, then them), with its placeholders and
    /// live bytes.
    pub fn nested(&mut self, other: Enc) {
        let n = u32::try_from(other.buf.len()).expect("snapshot sections are shorter than 4 GiB");
        self.u32(n);
        let base = self.buf.len();
        self.buf.extend_from_slice(&other.buf);
        self.pending
            .extend(other.pending.into_iter().map(|(at, lsn)| (base + at, lsn)));
        for (segment, bytes) in other.live {
            *self.live.entry(segment).or_default() += bytes;
        }
    }
    /// Takes the encoded bytes, the placeholders and the live bytes.
    pub fn finish(self) -> Finished {
        (self.buf, self.pending, self.live)
    }
}

/// Replaces the placeholder at `at` of an encoded section with the entry's place.
pub fn fill_place(buf: &mut [u8], at: usize, segment: u64, offset: u64) {
    debug_assert_eq!(&buf[at..at + 8], &[0u8; 8], "not a placeholder");
    buf[at..at + 8].copy_from_slice(&segment.to_le_bytes());
    buf[at + 8..at + 16].copy_from_slice(&offset.to_le_bytes());
}

/// A section being decoded.
pub struct Dec<'a> {
    buf: &'a [u8],
    pos: usize,
}

impl<'a> Dec<'a> {
    pub fn new(buf: &'a [u8]) -> Self {
        Dec { buf, pos: 0 }
    }
    fn take(&mut self, n: usize, what: &str) -> Result<&'a [u8], String> {
        match self.pos.checked_add(n) {
            Some(end) if end <= self.buf.len() => {
                let out = &self.buf[self.pos..end];
                self.pos = end;
                Ok(out)
            }
            _ => Err(format!(
                "{what}: {n} bytes needed at offset {}, {} left",
                self.pos,
                self.buf.len() - self.pos
            )),
        }
    }
    fn array<const N: usize>(&mut self, what: &str) -> Result<[u8; N], String> {
        let b = self.take(N, what)?;
        let mut out = [0u8; N];
        out.copy_from_slice(b);
        Ok(out)
    }
    pub fn u8(&mut self, what: &str) -> Result<u8, String> {
        Ok(self.take(1, what)?[0])
    }
    pub fn bool(&mut self, what: &str) -> Result<bool, String> {
        match self.u8(what)? {
            0 => Ok(false),
            1 => Ok(true),
            b => Err(format!("{what}: {b} is not a boolean")),
        }
    }
    pub fn u16(&mut self, what: &str) -> Result<u16, String> {
        Ok(u16::from_le_bytes(self.array(what)?))
    }
    pub fn u32(&mut self, what: &str) -> Result<u32, String> {
        Ok(u32::from_le_bytes(self.array(what)?))
    }
    pub fn u64(&mut self, what: &str) -> Result<u64, String> {
        Ok(u64::from_le_bytes(self.array(what)?))
    }
    pub fn i64(&mut self, what: &str) -> Result<i64, String> {
        Ok(i64::from_le_bytes(self.array(what)?))
    }
    pub fn f64(&mut self, what: &str) -> Result<f64, String> {
        Ok(f64::from_bits(self.u64(what)?))
    }
    /// A count of items that follow, each at least `min_item_bytes` long: a count the rest of
    /// the section cannot hold is refused before anything is allocated for it.
    pub fn count(&mut self, what: &str, min_item_bytes: usize) -> Result<usize, String> {
        let n = self.u64(what)?;
        let left = (self.buf.len() - self.pos) as u64;
        if n.saturating_mul(min_item_bytes.max(1) as u64) > left {
            return Err(format!("{what}: {n} items cannot fit in the {left} bytes left"));
        }
        Ok(n as usize)
    }
    pub fn bytes(&mut self, what: &str) -> Result<&'a [u8], String> {
        let n = self.u32(what)? as usize;
        self.take(n, what)
    }
    pub fn str(&mut self, what: &str) -> Result<&'a str, String> {
        std::str::from_utf8(self.bytes(what)?).map_err(|e| format!("{what}: not UTF-8: {e}"))
    }
    /// A place written by [`Enc::place`]: (segment's first LSN, offset).
    pub fn place(&mut self, what: &str) -> Result<(u64, u64), String> {
        let segment = self.u64(what)?;
        let offset = self.u64(what)?;
        if segment == 0 {
            return Err(format!("{what}: a place that was never filled in"));
        }
        if offset > u64::from(u32::MAX) {
            return Err(format!("{what}: offset {offset} is past any segment"));
        }
        Ok((segment, offset))
    }
    /// Bytes not read yet.
    pub fn remaining(&self) -> usize {
        self.buf.len() - self.pos
    }
    /// Fails unless every byte was read.
    pub fn done(&self, what: &str) -> Result<(), String> {
        if self.pos == self.buf.len() {
            Ok(())
        } else {
            Err(format!("{what}: {} bytes left over", self.buf.len() - self.pos))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_placeholders() {
        let mut e = Enc::new();
        e.u8(7);
        e.bool(true);
        e.u16(0xBEEF);
        e.u32(123_456);
        e.u64(u64::MAX);
        e.i64(-5);
        e.f64(-0.0);
        e.str("héllo");
        e.place(17, 4096, 48);
        e.pending_place(99);
        e.count(2);
        e.u8(1);
        e.u8(2);
        let (mut buf, pending, live) = e.finish();
        assert_eq!(pending.len(), 1);
        assert_eq!(live.get(&17), Some(&48));
        // An unfilled placeholder is refused.
        {
            let mut d = Dec::new(&buf);
            d.take(buf.len() - 10 - PLACE_BYTES, "skip").unwrap();
            assert!(d.place("p").unwrap_err().contains("never filled"));
        }
        fill_place(&mut buf, pending[0].0, 33, 64);
        let mut d = Dec::new(&buf);
        assert_eq!(d.u8("a").unwrap(), 7);
        assert!(d.bool("b").unwrap());
        assert_eq!(d.u16("c").unwrap(), 0xBEEF);
        assert_eq!(d.u32("d").unwrap(), 123_456);
        assert_eq!(d.u64("e").unwrap(), u64::MAX);
        assert_eq!(d.i64("f").unwrap(), -5);
        assert!(d.f64("g").unwrap().is_sign_negative());
        assert_eq!(d.str("h").unwrap(), "héllo");
        assert_eq!(d.place("i").unwrap(), (17, 4096));
        assert_eq!(d.place("j").unwrap(), (33, 64));
        assert_eq!(d.count("k", 0).unwrap(), 2);
        assert_eq!((d.u8("l").unwrap(), d.u8("m").unwrap()), (1, 2));
        d.done("end").unwrap();
    }

    #[test]
    fn short_and_oversized_input_is_an_error() {
        let mut d = Dec::new(&[1, 2, 3]);
        assert!(d.u32("x").unwrap_err().contains("x"));
        let mut e = Enc::new();
        e.u64(1 << 40);
        let (buf, _, _) = e.finish();
        assert!(Dec::new(&buf).count("items", 8).is_err());
        let mut e = Enc::new();
        e.u32(1000);
        let (buf, _, _) = e.finish();
        assert!(Dec::new(&buf).bytes("s").is_err());
        let mut d = Dec::new(&[2]);
        assert!(d.bool("flag").is_err());
    }
}
