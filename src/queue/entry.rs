//! The bodies of queue log entries (`format-spec/queue.md`): encoders and decoders side by side.
//! Decoding never trusts the input.

pub const ENTRY_QUEUE_ENQUEUE: u16 = 200;
pub const ENTRY_QUEUE_LEASE: u16 = 201;
pub const ENTRY_QUEUE_ACK: u16 = 202;
pub const ENTRY_QUEUE_NACK: u16 = 203;
pub const ENTRY_QUEUE_TOUCH: u16 = 204;
pub const ENTRY_QUEUE_DEAD: u16 = 205;
pub const ENTRY_QUEUE_REQUEUE: u16 = 206;
pub const ENTRY_QUEUE_PURGE: u16 = 207;
/// An ENQUEUE that carries the dedup window its keys were added under.
pub const ENTRY_QUEUE_ADD: u16 = 208;
/// Lets time run: the leases and delays that ended by `at_ms` run out (no tail).
pub const ENTRY_QUEUE_TICK: u16 = 209;
/// The dedup window of an `ENQUEUE` (200), which does not carry one: the default window of the
/// versions that wrote it.
pub const LEGACY_DEDUP_WINDOW_MS: u64 = 300_000;

/// Messages in one ENQUEUE entry, and sequence numbers in one operation entry, at most.
pub const MAX_ITEMS: usize = 1000;
/// The longest dedup key.
pub const DEDUP_KEY_MAX: usize = 1024;
/// NACK flag: to the dead-letter queue.
pub const FLAG_TO_DLQ: u32 = 1;

const MESSAGE_FIXED: usize = 24;

pub use crate::log::body::Head;
use crate::log::body::{put_head, Reader};

/// A message of an ENQUEUE entry; `payload_offset` is where its payload starts in the body
/// (set by [`encode_enqueue`] and by the decoder).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NewMessage<'a> {
    pub seq: u64,
    pub visible_at_ms: u64,
    pub priority: u8,
    pub dedup_key: &'a str,
    pub payload: &'a [u8],
    pub payload_offset: usize,
}

/// The tail of LEASE, ACK, NACK, TOUCH, DEAD and REQUEUE.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Op {
    pub time_ms: u64,
    pub flags: u32,
    pub seqs: Vec<u64>,
}

/// Encodes an ENQUEUE body, setting each message's `payload_offset`.
pub fn encode_enqueue(h: &Head<'_>, messages: &mut [NewMessage<'_>]) -> Vec<u8> {
    encode_messages(h, None, messages)
}

/// Encodes an ADD body (an ENQUEUE with the dedup window its keys are added under), setting
/// each message's `payload_offset`.
pub fn encode_add(h: &Head<'_>, dedup_window_ms: u64, messages: &mut [NewMessage<'_>]) -> Vec<u8> {
    encode_messages(h, Some(dedup_window_ms), messages)
}

fn encode_messages(h: &Head<'_>, window: Option<u64>, messages: &mut [NewMessage<'_>]) -> Vec<u8> {
    assert!((1..=MAX_ITEMS).contains(&messages.len()));
    let size: usize = messages
        .iter()
        .map(|m| MESSAGE_FIXED + m.dedup_key.len() + m.payload.len())
        .sum();
    let mut b = Vec::with_capacity(crate::log::body::head_bytes(h.namespace.len(), h.name.len()) + 12 + size);
    put_head(&mut b, h);
    if let Some(w) = window {
        b.extend_from_slice(&w.to_le_bytes());
    }
    b.extend_from_slice(&(messages.len() as u32).to_le_bytes());
    for m in messages.iter_mut() {
        b.extend_from_slice(&m.seq.to_le_bytes());
        b.extend_from_slice(&m.visible_at_ms.to_le_bytes());
        b.push(m.priority);
        b.push(0);
        b.extend_from_slice(&(m.dedup_key.len() as u16).to_le_bytes());
        b.extend_from_slice(&(m.payload.len() as u32).to_le_bytes());
        b.extend_from_slice(m.dedup_key.as_bytes());
        m.payload_offset = b.len();
        b.extend_from_slice(m.payload);
    }
    b
}

/// Encodes the body of an operation entry (or of PURGE, with `op` `None`).
pub fn encode_op(h: &Head<'_>, op: Option<&Op>) -> Vec<u8> {
    let mut b = Vec::new();
    put_head(&mut b, h);
    if let Some(op) = op {
        assert!((1..=MAX_ITEMS).contains(&op.seqs.len()));
        b.extend_from_slice(&op.time_ms.to_le_bytes());
        b.extend_from_slice(&op.flags.to_le_bytes());
        b.extend_from_slice(&(op.seqs.len() as u32).to_le_bytes());
        for s in &op.seqs {
            b.extend_from_slice(&s.to_le_bytes());
        }
    }
    b
}

fn read_head<'a>(r: &mut Reader<'a>) -> Result<Head<'a>, String> {
    crate::log::body::read_head(r, "queue name")
}

/// Decodes the head of any queue entry.
pub fn decode_head(b: &[u8]) -> Result<Head<'_>, String> {
    read_head(&mut Reader::new(b))
}

pub fn decode_enqueue(b: &[u8]) -> Result<(Head<'_>, Vec<NewMessage<'_>>), String> {
    decode_messages(b, false).map(|(h, _, m)| (h, m))
}

/// An ENQUEUE or ADD: its head, the dedup window its keys were added under, its messages.
pub type Added<'a> = (Head<'a>, u64, Vec<NewMessage<'a>>);

/// Decodes an ENQUEUE (whose window is [`LEGACY_DEDUP_WINDOW_MS`]) or an ADD.
pub fn decode_any_enqueue(entry_type: u16, b: &[u8]) -> Result<Added<'_>, String> {
    match entry_type {
        ENTRY_QUEUE_ENQUEUE => decode_messages(b, false),
        ENTRY_QUEUE_ADD => decode_messages(b, true),
        t => Err(format!("entry type {t} is not an ENQUEUE or ADD")),
    }
}

/// Whether an entry type adds messages (ENQUEUE, ADD).
pub fn adds_messages(entry_type: u16) -> bool {
    matches!(entry_type, ENTRY_QUEUE_ENQUEUE | ENTRY_QUEUE_ADD)
}

fn decode_messages(b: &[u8], with_window: bool) -> Result<Added<'_>, String> {
    let mut r = Reader::new(b);
    let h = read_head(&mut r)?;
    let window = if with_window {
        let w = r.u64()?;
        if w == 0 {
            return Err("ADD with a dedup window of 0".into());
        }
        w
    } else {
        LEGACY_DEDUP_WINDOW_MS
    };
    let n = r.u32()? as usize;
    if !(1..=MAX_ITEMS).contains(&n) {
        return Err("message count out of range".into());
    }
    let mut out = Vec::with_capacity(n);
    for _ in 0..n {
        let seq = r.u64()?;
        let visible_at_ms = r.u64()?;
        let priority = r.u8()?;
        if r.u8()? != 0 {
            return Err("reserved byte is not 0".into());
        }
        let dedup_len = r.u16()?;
        if dedup_len > DEDUP_KEY_MAX {
            return Err("dedup key too long".into());
        }
        let payload_len = r.u32()? as usize;
        let dedup_key = r.text(dedup_len, "dedup key")?;
        let payload_offset = r.at();
        let payload = r.take(payload_len)?;
        if seq == 0 {
            return Err("message with sequence number 0".into());
        }
        out.push(NewMessage {
            seq,
            visible_at_ms,
            priority,
            dedup_key,
            payload,
            payload_offset,
        });
    }
    r.done()?;
    Ok((h, window, out))
}

pub fn decode_op(b: &[u8]) -> Result<(Head<'_>, Op), String> {
    let mut r = Reader::new(b);
    let h = read_head(&mut r)?;
    let time_ms = r.u64()?;
    let flags = r.u32()?;
    let n = r.u32()? as usize;
    if !(1..=MAX_ITEMS).contains(&n) {
        return Err("sequence count out of range".into());
    }
    let mut seqs = Vec::with_capacity(n);
    for _ in 0..n {
        seqs.push(r.u64()?);
    }
    r.done()?;
    Ok((h, Op { time_ms, flags, seqs }))
}

/// Decodes a PURGE or a TICK (a head, no tail).
pub fn decode_purge(b: &[u8]) -> Result<Head<'_>, String> {
    let mut r = Reader::new(b);
    let h = read_head(&mut r)?;
    r.done()?;
    Ok(h)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn h() -> Head<'static> {
        Head {
            namespace: "app",
            name: "jobs",
            at_ms: 1_700_000_000_000,
        }
    }

    #[test]
    fn round_trips() {
        let mut msgs = [
            NewMessage {
                seq: 7,
                visible_at_ms: 0,
                priority: 3,
                dedup_key: "",
                payload: b"hello",
                payload_offset: 0,
            },
            NewMessage {
                seq: 8,
                visible_at_ms: 99,
                priority: 255,
                dedup_key: "order-1",
                payload: b"",
                payload_offset: 0,
            },
        ];
        let b = encode_enqueue(&h(), &mut msgs);
        let offsets: Vec<usize> = msgs.iter().map(|m| m.payload_offset).collect();
        let (head, got) = decode_enqueue(&b).unwrap();
        assert_eq!(head, h());
        assert_eq!(got.len(), 2);
        assert_eq!((got[0].seq, got[0].priority, got[0].payload), (7, 3, &b"hello"[..]));
        assert_eq!(&b[offsets[0]..offsets[0] + 5], b"hello");
        assert_eq!(got, msgs, "the decoder gives back what was encoded, offsets included");
        assert_eq!((got[1].visible_at_ms, got[1].dedup_key), (99, "order-1"));
        let op = Op {
            time_ms: 5,
            flags: FLAG_TO_DLQ,
            seqs: vec![1, 2, 3],
        };
        let b = encode_op(&h(), Some(&op));
        assert_eq!(decode_op(&b).unwrap(), (h(), op));
        assert_eq!(decode_purge(&encode_op(&h(), None)).unwrap(), h());
        assert_eq!(decode_head(&b).unwrap(), h());
        let b = encode_add(&h(), 777, &mut msgs);
        let (head, window, got) = decode_any_enqueue(ENTRY_QUEUE_ADD, &b).unwrap();
        assert_eq!((head, window), (h(), 777));
        assert_eq!(got, msgs, "offsets follow the window");
        assert_eq!(&b[msgs[0].payload_offset..msgs[0].payload_offset + 5], b"hello");
        let old = encode_enqueue(&h(), &mut msgs);
        assert_eq!(
            decode_any_enqueue(ENTRY_QUEUE_ENQUEUE, &old).unwrap().1,
            LEGACY_DEDUP_WINDOW_MS
        );
        assert!(decode_any_enqueue(ENTRY_QUEUE_ADD, &encode_add(&h(), 0, &mut msgs)).is_err());
    }

    #[test]
    fn malformed_bodies_are_errors() {
        let b = encode_enqueue(
            &h(),
            &mut [NewMessage {
                seq: 1,
                visible_at_ms: 0,
                priority: 0,
                dedup_key: "k",
                payload: b"xyz",
                payload_offset: 0,
            }],
        );
        for n in 0..b.len() {
            assert!(decode_enqueue(&b[..n]).is_err(), "prefix {n}");
        }
        let mut long = b.clone();
        long.push(0);
        assert!(decode_enqueue(&long).is_err());
        let op = encode_op(
            &h(),
            Some(&Op {
                time_ms: 0,
                flags: 0,
                seqs: vec![4],
            }),
        );
        for n in 0..op.len() {
            assert!(decode_op(&op[..n]).is_err(), "prefix {n}");
        }
        let mut zero_count = op.clone();
        let at = op.len() - 12;
        zero_count[at..at + 4].copy_from_slice(&0u32.to_le_bytes());
        assert!(decode_op(&zero_count[..op.len() - 8]).is_err());
    }
}
