//! The bodies of KV log entries (`format-spec/kv.md`): `KV_PUT` and `KV_DELETE`, encoder and
//! decoder side by side. Decoding never trusts the input.

pub const ENTRY_KV_PUT: u16 = 100;
pub const ENTRY_KV_DELETE: u16 = 101;

const PUT_FIXED_BYTES: usize = 24;
const DELETE_FIXED_BYTES: usize = 12;

/// The stored size of a `KV_PUT` entry (header included, aligned) for these lengths.
pub const fn put_entry_bytes(ns_len: usize, key_len: usize, value_len: usize) -> u64 {
    crate::log::format::stored_bytes(PUT_FIXED_BYTES + ns_len + key_len + value_len) as u64
}

/// The stored size of a `KV_DELETE` entry for these lengths.
pub const fn delete_entry_bytes(ns_len: usize, key_len: usize) -> u64 {
    crate::log::format::stored_bytes(DELETE_FIXED_BYTES + ns_len + key_len) as u64
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

/// A decoded `KV_DELETE`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Delete<'a> {
    pub version: u64,
    pub namespace: &'a str,
    pub key: &'a str,
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
    if !(1..=crate::api::path::NAME_MAX_BYTES).contains(&ns_len)
        || !(1..=crate::api::path::KEY_MAX_BYTES).contains(&key_len)
    {
        return Err("namespace or key length out of range".into());
    }
    let ns = text(&b[at..at + ns_len], "namespace")?;
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
        namespace,
        key,
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
                namespace: "app",
                key: "user:1"
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
    }
}
