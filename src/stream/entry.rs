//! The bodies of stream log entries (`format-spec/stream.md`): encoders and decoders side by
//! side. Decoding never trusts the input.

pub use crate::log::body::Head;
use crate::log::body::{head_bytes, put_head, put_name, read_head, Reader};

pub const ENTRY_STREAM_APPEND: u16 = 300;
pub const ENTRY_STREAM_TRIM: u16 = 301;
pub const ENTRY_STREAM_RETENTION: u16 = 302;
pub const ENTRY_GROUP_CREATE: u16 = 303;
pub const ENTRY_GROUP_READ: u16 = 304;
pub const ENTRY_GROUP_ACK: u16 = 305;
pub const ENTRY_GROUP_DELETE: u16 = 306;

/// Records in one APPEND entry, and offsets in one list of a group entry, at most.
pub const MAX_ITEMS: usize = 1000;
/// Largest `max_deliveries` of a group.
pub const MAX_DELIVERIES: u32 = 1000;

/// Bytes of an APPEND body with these payload sizes.
pub fn append_body_bytes(ns_len: usize, stream_len: usize, payloads: impl Iterator<Item = usize>) -> usize {
    head_bytes(ns_len, stream_len) + 12 + payloads.map(|p| 4 + p).sum::<usize>()
}

/// Builds an APPEND body record by record, each payload written straight into it (so a
/// request's payloads are decoded once, into the bytes the log will hold). The time and first
/// offset are the owner shard's to give: [`stamp_append`] sets them.
pub struct AppendBody {
    buf: Vec<u8>,
    count: u32,
    /// Where the record count is.
    count_at: usize,
}

impl AppendBody {
    pub fn new(ns: &str, stream: &str, capacity: usize) -> AppendBody {
        let mut buf = Vec::with_capacity(capacity.max(head_bytes(ns.len(), stream.len()) + 12));
        put_head(
            &mut buf,
            &Head {
                namespace: ns,
                name: stream,
                at_ms: 0,
            },
        );
        buf.extend_from_slice(&0u64.to_le_bytes());
        let count_at = buf.len();
        buf.extend_from_slice(&0u32.to_le_bytes());
        AppendBody {
            buf,
            count: 0,
            count_at,
        }
    }

    /// Adds a record whose payload `write` appends to the buffer; returns the payload's length.
    pub fn push_with<E>(&mut self, write: impl FnOnce(&mut Vec<u8>) -> Result<(), E>) -> Result<usize, E> {
        assert!(
            (self.count as usize) < MAX_ITEMS,
            "at most {MAX_ITEMS} records an entry"
        );
        let at = self.buf.len();
        self.buf.extend_from_slice(&0u32.to_le_bytes());
        if let Err(e) = write(&mut self.buf) {
            self.buf.truncate(at);
            return Err(e);
        }
        let n = self.buf.len() - at - 4;
        self.buf[at..at + 4].copy_from_slice(&(n as u32).to_le_bytes());
        self.count += 1;
        Ok(n)
    }

    pub fn count(&self) -> u32 {
        self.count
    }

    /// The body (time and first offset still 0).
    pub fn finish(mut self) -> Vec<u8> {
        assert!(self.count >= 1, "an APPEND holds at least one record");
        self.buf[self.count_at..self.count_at + 4].copy_from_slice(&self.count.to_le_bytes());
        self.buf
    }
}

/// Sets the time and the first offset of an APPEND body made by [`AppendBody`].
pub fn stamp_append(body: &mut [u8], at_ms: u64, first_offset: u64) {
    let ns_len = usize::from(u16::from_le_bytes([body[0], body[1]]));
    let name_len = usize::from(u16::from_le_bytes([body[2], body[3]]));
    body[4..12].copy_from_slice(&at_ms.to_le_bytes());
    let at = head_bytes(ns_len, name_len);
    body[at..at + 8].copy_from_slice(&first_offset.to_le_bytes());
}

/// Encodes an APPEND body.
pub fn encode_append(h: &Head<'_>, first_offset: u64, payloads: &[Vec<u8>]) -> Vec<u8> {
    assert!((1..=MAX_ITEMS).contains(&payloads.len()));
    let size = append_body_bytes(h.namespace.len(), h.name.len(), payloads.iter().map(Vec::len));
    let mut b = AppendBody::new(h.namespace, h.name, size);
    for p in payloads {
        let _ = b.push_with(|buf| {
            buf.extend_from_slice(p);
            Ok::<(), ()>(())
        });
    }
    let mut body = b.finish();
    stamp_append(&mut body, h.at_ms, first_offset);
    debug_assert_eq!(body.len(), size);
    body
}

/// A decoded APPEND body; the records are walked with [`Append::records`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Append<'a> {
    pub head: Head<'a>,
    pub first_offset: u64,
    pub count: u32,
    /// The record area: `count` × (u32 length, payload), already checked to add up exactly.
    records: &'a [u8],
}

impl<'a> Append<'a> {
    /// Offset past the entry's last record.
    pub fn end_offset(&self) -> u64 {
        self.first_offset + u64::from(self.count)
    }

    /// The payloads in offset order.
    pub fn records(&self) -> impl Iterator<Item = &'a [u8]> {
        let mut r = Reader::new(self.records);
        (0..self.count).map(move |_| {
            let n = r.u32().unwrap_or(0) as usize;
            r.take(n).unwrap_or(&[])
        })
    }
}

/// Decodes an APPEND body, checking that the records fill it exactly.
pub fn decode_append(b: &[u8]) -> Result<Append<'_>, String> {
    let mut r = Reader::new(b);
    let head = read_head(&mut r, "stream name")?;
    let first_offset = r.u64()?;
    let count = r.u32()?;
    if !(1..=MAX_ITEMS as u32).contains(&count) {
        return Err("record count out of range".into());
    }
    let start = r.at();
    for _ in 0..count {
        let n = r.u32()? as usize;
        r.take(n)?;
    }
    r.done()?;
    first_offset
        .checked_add(u64::from(count))
        .ok_or("record offsets overflow")?;
    Ok(Append {
        head,
        first_offset,
        count,
        records: &b[start..],
    })
}

/// Whether an APPEND body belongs to this stream, without decoding the records.
pub fn is_of(b: &[u8], ns: &str, stream: &str) -> bool {
    let mut r = Reader::new(b);
    matches!(read_head(&mut r, "stream name"), Ok(h) if h.namespace == ns && h.name == stream)
}

/// Retention limits; 0 = none.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Retention {
    pub max_age_ms: u64,
    pub max_bytes: u64,
    pub max_records: u64,
}

impl Retention {
    pub fn any(&self) -> bool {
        self.max_age_ms > 0 || self.max_bytes > 0 || self.max_records > 0
    }
}

pub fn encode_trim(h: &Head<'_>, before_offset: u64) -> Vec<u8> {
    let mut b = Vec::with_capacity(head_bytes(h.namespace.len(), h.name.len()) + 8);
    put_head(&mut b, h);
    b.extend_from_slice(&before_offset.to_le_bytes());
    b
}

pub fn decode_trim(b: &[u8]) -> Result<(Head<'_>, u64), String> {
    let mut r = Reader::new(b);
    let h = read_head(&mut r, "stream name")?;
    let before = r.u64()?;
    r.done()?;
    Ok((h, before))
}

pub fn encode_retention(h: &Head<'_>, t: &Retention) -> Vec<u8> {
    let mut b = Vec::with_capacity(head_bytes(h.namespace.len(), h.name.len()) + 24);
    put_head(&mut b, h);
    for v in [t.max_age_ms, t.max_bytes, t.max_records] {
        b.extend_from_slice(&v.to_le_bytes());
    }
    b
}

pub fn decode_retention(b: &[u8]) -> Result<(Head<'_>, Retention), String> {
    let mut r = Reader::new(b);
    let h = read_head(&mut r, "stream name")?;
    let t = Retention {
        max_age_ms: r.u64()?,
        max_bytes: r.u64()?,
        max_records: r.u64()?,
    };
    r.done()?;
    Ok((h, t))
}

/// A consumer-group entry's decoded tail.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum GroupOp<'a> {
    Create {
        cursor: u64,
        ack_timeout_ms: u64,
        max_deliveries: u32,
    },
    Read(Read<'a>),
    Ack(Vec<u64>),
    Delete,
}

/// One read of a group by one consumer (`GROUP_READ`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Read<'a> {
    pub consumer: &'a str,
    pub deadline_ms: u64,
    pub new_from: u64,
    pub cursor: u64,
    pub redelivered: Vec<u64>,
    pub given_up: Vec<u64>,
}

fn put_offsets(b: &mut Vec<u8>, offsets: &[u64]) {
    assert!(offsets.len() <= MAX_ITEMS);
    b.extend_from_slice(&(offsets.len() as u32).to_le_bytes());
    for o in offsets {
        b.extend_from_slice(&o.to_le_bytes());
    }
}

fn read_offsets(r: &mut Reader<'_>, min: usize) -> Result<Vec<u64>, String> {
    let n = r.u32()? as usize;
    if !(min..=MAX_ITEMS).contains(&n) {
        return Err("offset count out of range".into());
    }
    (0..n).map(|_| r.u64()).collect()
}

/// The entry type of a group operation.
pub fn group_entry_type(op: &GroupOp<'_>) -> u16 {
    match op {
        GroupOp::Create { .. } => ENTRY_GROUP_CREATE,
        GroupOp::Read(_) => ENTRY_GROUP_READ,
        GroupOp::Ack(_) => ENTRY_GROUP_ACK,
        GroupOp::Delete => ENTRY_GROUP_DELETE,
    }
}

pub fn encode_group(h: &Head<'_>, group: &str, op: &GroupOp<'_>) -> Vec<u8> {
    let mut b = Vec::new();
    put_head(&mut b, h);
    put_name(&mut b, group);
    match op {
        GroupOp::Create {
            cursor,
            ack_timeout_ms,
            max_deliveries,
        } => {
            b.extend_from_slice(&cursor.to_le_bytes());
            b.extend_from_slice(&ack_timeout_ms.to_le_bytes());
            b.extend_from_slice(&max_deliveries.to_le_bytes());
        }
        GroupOp::Read(rd) => {
            put_name(&mut b, rd.consumer);
            for v in [rd.deadline_ms, rd.new_from, rd.cursor] {
                b.extend_from_slice(&v.to_le_bytes());
            }
            put_offsets(&mut b, &rd.redelivered);
            put_offsets(&mut b, &rd.given_up);
        }
        GroupOp::Ack(offsets) => {
            assert!(!offsets.is_empty());
            put_offsets(&mut b, offsets);
        }
        GroupOp::Delete => {}
    }
    b
}

/// Decodes a group entry of type `entry_type`: (head, group name, operation).
pub fn decode_group(entry_type: u16, b: &[u8]) -> Result<(Head<'_>, &str, GroupOp<'_>), String> {
    let mut r = Reader::new(b);
    let h = read_head(&mut r, "stream name")?;
    let group = r.name("group name")?;
    let op = match entry_type {
        ENTRY_GROUP_CREATE => {
            let cursor = r.u64()?;
            let ack_timeout_ms = r.u64()?;
            let max_deliveries = r.u32()?;
            if !(1..=MAX_DELIVERIES).contains(&max_deliveries) {
                return Err("max_deliveries out of range".into());
            }
            GroupOp::Create {
                cursor,
                ack_timeout_ms,
                max_deliveries,
            }
        }
        ENTRY_GROUP_READ => {
            let consumer = r.name("consumer name")?;
            let deadline_ms = r.u64()?;
            let new_from = r.u64()?;
            let cursor = r.u64()?;
            if cursor < new_from || cursor - new_from > MAX_ITEMS as u64 {
                return Err("read range out of order or too long".into());
            }
            GroupOp::Read(Read {
                consumer,
                deadline_ms,
                new_from,
                cursor,
                redelivered: read_offsets(&mut r, 0)?,
                given_up: read_offsets(&mut r, 0)?,
            })
        }
        ENTRY_GROUP_ACK => GroupOp::Ack(read_offsets(&mut r, 1)?),
        ENTRY_GROUP_DELETE => GroupOp::Delete,
        t => return Err(format!("entry type {t} is not a group entry")),
    };
    r.done()?;
    Ok((h, group, op))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn h() -> Head<'static> {
        Head {
            namespace: "app",
            name: "events",
            at_ms: 1_700_000_000_000,
        }
    }

    #[test]
    fn appends_round_trip() {
        let payloads = vec![b"one".to_vec(), Vec::new(), vec![7u8; 300]];
        let b = encode_append(&h(), 41, &payloads);
        assert_eq!(b.len(), append_body_bytes(3, 6, payloads.iter().map(Vec::len)));
        let a = decode_append(&b).unwrap();
        assert_eq!(
            (a.head.clone(), a.first_offset, a.count, a.end_offset()),
            (h(), 41, 3, 44)
        );
        let got: Vec<&[u8]> = a.records().collect();
        assert_eq!(got, vec![&b"one"[..], &b""[..], &[7u8; 300][..]]);
        assert!(is_of(&b, "app", "events"));
        assert!(!is_of(&b, "app", "event"));
        for n in 0..b.len() {
            assert!(decode_append(&b[..n]).is_err(), "prefix {n}");
        }
        let mut long = b.clone();
        long.push(0);
        assert!(decode_append(&long).is_err(), "trailing bytes");
        let overflow = encode_append(&h(), u64::MAX, &payloads);
        assert!(decode_append(&overflow).is_err(), "offsets past u64::MAX");
    }

    #[test]
    fn trims_and_retention_round_trip() {
        let b = encode_trim(&h(), 99);
        assert_eq!(decode_trim(&b).unwrap(), (h(), 99));
        let t = Retention {
            max_age_ms: 1,
            max_bytes: 2,
            max_records: 3,
        };
        let b2 = encode_retention(&h(), &t);
        assert_eq!(decode_retention(&b2).unwrap(), (h(), t));
        for n in 0..b.len() {
            assert!(decode_trim(&b[..n]).is_err());
        }
        for n in 0..b2.len() {
            assert!(decode_retention(&b2[..n]).is_err());
        }
    }

    #[test]
    fn group_entries_round_trip() {
        let ops = [
            GroupOp::Create {
                cursor: 5,
                ack_timeout_ms: 30_000,
                max_deliveries: 5,
            },
            GroupOp::Read(Read {
                consumer: "w1",
                deadline_ms: 9,
                new_from: 10,
                cursor: 20,
                redelivered: vec![3, 4],
                given_up: vec![1],
            }),
            GroupOp::Ack(vec![3, 10, 11]),
            GroupOp::Delete,
        ];
        for op in &ops {
            let t = group_entry_type(op);
            let b = encode_group(&h(), "g", op);
            assert_eq!(decode_group(t, &b).unwrap(), (h(), "g", op.clone()));
            for n in 0..b.len() {
                assert!(decode_group(t, &b[..n]).is_err(), "{op:?} prefix {n}");
            }
            assert!(decode_group(ENTRY_STREAM_TRIM, &b).is_err());
        }
        let bad = encode_group(
            &h(),
            "g",
            &GroupOp::Create {
                cursor: 0,
                ack_timeout_ms: 1,
                max_deliveries: 0,
            },
        );
        assert!(decode_group(ENTRY_GROUP_CREATE, &bad).is_err(), "max_deliveries 0");
    }
}
