//! The bodies of KV log entries (`format-spec/kv.md`): `KV_PUT`, `KV_DELETE` (written before
//! deletes carried their time), `KV_DELETE_AT` and `KV_SWEEP`, encoder and decoder side by side.
//! Decoding never trusts the input.

pub const ENTRY_KV_PUT: u16 = 100;
pub const ENTRY_KV_DELETE: u16 = 101;
pub const ENTRY_KV_DELETE_AT: u16 = 102;
pub const ENTRY_KV_SWEEP: u16 = 103;

const PUT_FIXED_BYTES: usize = 24;
const DELETE_FIXED_BYTES: usize = 12;
const DELETE_AT_FIXED_BYTES: usize = 20;
const SWEEP_FIXED_BYTES: usize = 16;
/// Records one `KV_SWEEP` names at most.
pub const SWEEP_MAX_RECORDS: usize = 4096;

/// The stored size of a `KV_PUT` entry (header included, aligned) for these lengths.
pub const fn put_entry_bytes(ns_len: usize, key_len: usize, value_len: usize) -> u64 {
    crate::log::format::stored_bytes(PUT_FIXED_BYTES + ns_len + key_len + value_len) as u64
}

/// The stored size of a `KV_DELETE` entry for these lengths.
pub const fn delete_entry_bytes(ns_len: usize, key_len: usize) -> u64 {
    crate::log::format::stored_bytes(DELETE_FIXED_BYTES + ns_len + key_len) as u64
}

/// The stored size of a `KV_DELETE_AT` entry for these lengths.
pub const fn delete_at_entry_bytes(ns_len: usize, key_len: usize) -> u64 {
    crate::log::format::stored_bytes(DELETE_AT_FIXED_BYTES + ns_len + key_len) as u64
}

/// A decoded `KV_PUT`; `value_offset` is where the value starts inside the entry body.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Put<'a> {
    pub version: u64,
    pub expires_at_ms: u64,
    pub namespace: &'a str,
    pub key: &'a str,
    pub value: &'a [u8],
    pub value_offset: usize,
}

/// A decoded `KV_DELETE` or `KV_DELETE_AT`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Delete<'a> {
    pub version: u64,
    /// When the key was deleted (Unix ms); 0 for a `KV_DELETE`, which does not say.
    pub deleted_at_ms: u64,
    pub namespace: &'a str,
    pub key: &'a str,
}

/// A decoded `KV_SWEEP`: the records of one namespace (of one partition) that were no longer
/// visible at `at_ms`, each by key and version.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Sweep<'a> {
    pub at_ms: u64,
    pub namespace: &'a str,
    pub records: Vec<(&'a str, u64)>,
}

pub fn encode_put(version: u64, expires_at_ms: u64, namespace: &str, key: &str, value: &[u8]) -> Vec<u8> {
    let mut b = Vec::with_capacity(PUT_FIXED_BYTES + namespace.len() + key.len() + value.len());
    b.extend_from_slice(&version.to_le_bytes());
    b.extend_from_slice(&expires_at_ms.to_le_bytes());
    b.extend_from_slice(&(namespace.len() as u16).to_le_bytes());
    b.extend_from_slice(&(key.len() as u16).to_le_bytes());
    b.extend_from_slice(&(value.len() as u32).to_le_bytes());
    b.extend_from_slice(namespace.as_bytes());
    b.extend_from_slice(key.as_bytes());
    b.extend_from_slice(value);
    b
}

pub fn encode_delete_at(version: u64, deleted_at_ms: u64, namespace: &str, key: &str) -> Vec<u8> {
    let mut b = Vec::with_capacity(DELETE_AT_FIXED_BYTES + namespace.len() + key.len());
    b.extend_from_slice(&version.to_le_bytes());
    b.extend_from_slice(&deleted_at_ms.to_le_bytes());
    b.extend_from_slice(&(namespace.len() as u16).to_le_bytes());
    b.extend_from_slice(&(key.len() as u16).to_le_bytes());
    b.extend_from_slice(namespace.as_bytes());
    b.extend_from_slice(key.as_bytes());
    b
}

/// A `KV_SWEEP` body; `records` are (key, version), at most [`SWEEP_MAX_RECORDS`].
pub fn encode_sweep(at_ms: u64, namespace: &str, records: &[(&str, u64)]) -> Vec<u8> {
    debug_assert!(!records.is_empty() && records.len() <= SWEEP_MAX_RECORDS);
    let keys: usize = records.iter().map(|(k, _)| 10 + k.len()).sum();
    let mut b = Vec::with_capacity(SWEEP_FIXED_BYTES + namespace.len() + keys);
    b.extend_from_slice(&at_ms.to_le_bytes());
    b.extend_from_slice(&(namespace.len() as u16).to_le_bytes());
    b.extend_from_slice(&0u16.to_le_bytes());
    b.extend_from_slice(&(records.len() as u32).to_le_bytes());
    b.extend_from_slice(namespace.as_bytes());
    for (key, version) in records {
        b.extend_from_slice(&version.to_le_bytes());
        b.extend_from_slice(&(key.len() as u16).to_le_bytes());
        b.extend_from_slice(key.as_bytes());
    }
    b
}

/// The `KV_DELETE` body entries written before deletes carried their time (decoded, never
/// written any more except by tests of old data).
pub fn encode_delete(version: u64, namespace: &str, key: &str) -> Vec<u8> {
    let mut b = Vec::with_capacity(DELETE_FIXED_BYTES + namespace.len() + key.len());
    b.extend_from_slice(&version.to_le_bytes());
    b.extend_from_slice(&(namespace.len() as u16).to_le_bytes());
    b.extend_from_slice(&(key.len() as u16).to_le_bytes());
    b.extend_from_slice(namespace.as_bytes());
    b.extend_from_slice(key.as_bytes());
    b
}

fn le_u16(b: &[u8], at: usize) -> usize {
    u16::from_le_bytes([b[at], b[at + 1]]) as usize
}

fn le_u64(b: &[u8], at: usize) -> u64 {
    let mut x = [0u8; 8];
    x.copy_from_slice(&b[at..at + 8]);
    u64::from_le_bytes(x)
}

fn text<'a>(b: &'a [u8], what: &str) -> Result<&'a str, String> {
    std::str::from_utf8(b).map_err(|_| format!("{what} is not UTF-8"))
}

fn names(b: &[u8], at: usize, ns_len: usize, key_len: usize) -> Result<(&str, &str), String> {
    if !(1..=crate::names::NAME_MAX_BYTES).contains(&ns_len) || !(1..=crate::names::KEY_MAX_BYTES).contains(&key_len) {
        return Err("namespace or key length out of range".into());
    }
    let ns = text(&b[at..at + ns_len], "namespace")?;
    if !crate::names::is_valid_name(ns) {
        return Err(format!("invalid namespace name {ns:?}"));
    }
    let key = text(&b[at + ns_len..at + ns_len + key_len], "key")?;
    Ok((ns, key))
}

pub fn decode_put(b: &[u8]) -> Result<Put<'_>, String> {
    if b.len() < PUT_FIXED_BYTES {
        return Err("KV_PUT body too short".into());
    }
    let (ns_len, key_len) = (le_u16(b, 16), le_u16(b, 18));
    let value_len = u32::from_le_bytes([b[20], b[21], b[22], b[23]]) as usize;
    if b.len() != PUT_FIXED_BYTES + ns_len + key_len + value_len {
        return Err("KV_PUT lengths do not add up".into());
    }
    let (namespace, key) = names(b, PUT_FIXED_BYTES, ns_len, key_len)?;
    let value_offset = PUT_FIXED_BYTES + ns_len + key_len;
    let version = le_u64(b, 0);
    if version == 0 {
        return Err("KV_PUT with version 0".into());
    }
    Ok(Put {
        version,
        expires_at_ms: le_u64(b, 8),
        namespace,
        key,
        value: &b[value_offset..],
        value_offset,
    })
}

pub fn decode_delete(b: &[u8]) -> Result<Delete<'_>, String> {
    if b.len() < DELETE_FIXED_BYTES {
        return Err("KV_DELETE body too short".into());
    }
    let (ns_len, key_len) = (le_u16(b, 8), le_u16(b, 10));
    if b.len() != DELETE_FIXED_BYTES + ns_len + key_len {
        return Err("KV_DELETE lengths do not add up".into());
    }
    let (namespace, key) = names(b, DELETE_FIXED_BYTES, ns_len, key_len)?;
    let version = le_u64(b, 0);
    if version == 0 {
        return Err("KV_DELETE with version 0".into());
    }
    Ok(Delete {
        version,
        deleted_at_ms: 0,
        namespace,
        key,
    })
}

pub fn decode_delete_at(b: &[u8]) -> Result<Delete<'_>, String> {
    if b.len() < DELETE_AT_FIXED_BYTES {
        return Err("KV_DELETE_AT body too short".into());
    }
    let (ns_len, key_len) = (le_u16(b, 16), le_u16(b, 18));
    if b.len() != DELETE_AT_FIXED_BYTES + ns_len + key_len {
        return Err("KV_DELETE_AT lengths do not add up".into());
    }
    let (namespace, key) = names(b, DELETE_AT_FIXED_BYTES, ns_len, key_len)?;
    let version = le_u64(b, 0);
    if version == 0 {
        return Err("KV_DELETE_AT with version 0".into());
    }
    Ok(Delete {
        version,
        deleted_at_ms: le_u64(b, 8),
        namespace,
        key,
    })
}

/// Decodes either kind of delete.
pub fn decode_any_delete(entry_type: u16, b: &[u8]) -> Result<Delete<'_>, String> {
    match entry_type {
        ENTRY_KV_DELETE => decode_delete(b),
        ENTRY_KV_DELETE_AT => decode_delete_at(b),
        t => Err(format!("entry type {t} is not a KV delete")),
    }
}

pub fn decode_sweep(b: &[u8]) -> Result<Sweep<'_>, String> {
    if b.len() < SWEEP_FIXED_BYTES {
        return Err("KV_SWEEP body too short".into());
    }
    let ns_len = le_u16(b, 8);
    if le_u16(b, 10) != 0 {
        return Err("KV_SWEEP: reserved bytes are not zero".into());
    }
    let count = u32::from_le_bytes([b[12], b[13], b[14], b[15]]) as usize;
    if !(1..=SWEEP_MAX_RECORDS).contains(&count) {
        return Err(format!("KV_SWEEP of {count} records"));
    }
    if !(1..=crate::names::NAME_MAX_BYTES).contains(&ns_len) || b.len() < SWEEP_FIXED_BYTES + ns_len {
        return Err("KV_SWEEP namespace length out of range".into());
    }
    let namespace = text(&b[SWEEP_FIXED_BYTES..SWEEP_FIXED_BYTES + ns_len], "namespace")?;
    let mut at = SWEEP_FIXED_BYTES + ns_len;
    let mut records = Vec::with_capacity(count);
    for _ in 0..count {
        if b.len() < at + 10 {
            return Err("KV_SWEEP cut short".into());
        }
        let version = le_u64(b, at);
        let key_len = le_u16(b, at + 8);
        at += 10;
        if version == 0 || !(1..=crate::names::KEY_MAX_BYTES).contains(&key_len) || b.len() < at + key_len {
            return Err("KV_SWEEP record out of range".into());
        }
        records.push((text(&b[at..at + key_len], "key")?, version));
        at += key_len;
    }
    if at != b.len() {
        return Err("KV_SWEEP lengths do not add up".into());
    }
    Ok(Sweep {
        at_ms: le_u64(b, 0),
        namespace,
        records,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips() {
        let b = encode_put(5, 99, "app", "user:1", b"hello");
        let p = decode_put(&b).unwrap();
        assert_eq!(
            (p.version, p.expires_at_ms, p.namespace, p.key, p.value),
            (5, 99, "app", "user:1", &b"hello"[..])
        );
        assert_eq!(&b[p.value_offset..], b"hello");
        let d = encode_delete(6, "app", "user:1");
        assert_eq!(
            decode_delete(&d).unwrap(),
            Delete {
                version: 6,
                deleted_at_ms: 0,
                namespace: "app",
                key: "user:1"
            }
        );
        let d = encode_delete_at(7, 1234, "app", "user:1");
        assert_eq!(
            decode_any_delete(ENTRY_KV_DELETE_AT, &d).unwrap(),
            Delete {
                version: 7,
                deleted_at_ms: 1234,
                namespace: "app",
                key: "user:1"
            }
        );
        assert_eq!(
            delete_at_entry_bytes(3, 6),
            crate::log::format::stored_bytes(d.len()) as u64
        );
        let s = encode_sweep(99, "app", &[("a", 3), ("bc", 9)]);
        assert_eq!(
            decode_sweep(&s).unwrap(),
            Sweep {
                at_ms: 99,
                namespace: "app",
                records: vec![("a", 3), ("bc", 9)]
            }
        );
    }

    #[test]
    fn malformed_bodies_are_errors() {
        let b = encode_put(5, 0, "app", "k", b"v");
        for n in 0..b.len() {
            assert!(decode_put(&b[..n]).is_err(), "prefix {n}");
        }
        let mut long = b.clone();
        long.push(0);
        assert!(decode_put(&long).is_err());
        assert!(decode_put(&encode_put(0, 0, "app", "k", b"v")).is_err());
        assert!(decode_put(&encode_put(1, 0, "", "k", b"v")).is_err());
        let mut bad_utf8 = encode_put(1, 0, "app", "kk", b"v");
        bad_utf8[24 + 3] = 0xff;
        assert!(decode_put(&bad_utf8).is_err());
        let d = encode_delete(2, "app", "k");
        for n in 0..d.len() {
            assert!(decode_delete(&d[..n]).is_err());
        }
        let d = encode_delete_at(2, 5, "app", "k");
        for n in 0..d.len() {
            assert!(decode_delete_at(&d[..n]).is_err());
        }
        let s = encode_sweep(1, "app", &[("k", 2)]);
        for n in 0..s.len() {
            assert!(decode_sweep(&s[..n]).is_err(), "prefix {n}");
        }
        let mut zero = s.clone();
        zero[16 + 3..16 + 3 + 8].copy_from_slice(&0u64.to_le_bytes());
        assert!(decode_sweep(&zero).is_err(), "version 0");
    }
}
