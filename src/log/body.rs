//! Shared pieces of entry bodies: a bounds-checked reader for decoders (which never trust their
//! input), and the head that queue and stream entries start with — the namespace, the object's
//! name and the shard's clock for the object's kind (layout in `format-spec/queue.md`).

/// A bounds-checked reader over an entry body.
pub struct Reader<'a> {
    b: &'a [u8],
    at: usize,
}

impl<'a> Reader<'a> {
    pub fn new(b: &'a [u8]) -> Reader<'a> {
        Reader { b, at: 0 }
    }
    /// Bytes read so far.
    pub fn at(&self) -> usize {
        self.at
    }
    pub fn take(&mut self, n: usize) -> Result<&'a [u8], String> {
        let end = self.at.checked_add(n).filter(|&e| e <= self.b.len());
        let end = end.ok_or_else(|| "entry shorter than its lengths say".to_string())?;
        let s = &self.b[self.at..end];
        self.at = end;
        Ok(s)
    }
    pub fn u8(&mut self) -> Result<u8, String> {
        Ok(self.take(1)?[0])
    }
    pub fn u16(&mut self) -> Result<usize, String> {
        let s = self.take(2)?;
        Ok(u16::from_le_bytes([s[0], s[1]]) as usize)
    }
    pub fn u32(&mut self) -> Result<u32, String> {
        let s = self.take(4)?;
        Ok(u32::from_le_bytes([s[0], s[1], s[2], s[3]]))
    }
    pub fn u64(&mut self) -> Result<u64, String> {
        let mut x = [0u8; 8];
        x.copy_from_slice(self.take(8)?);
        Ok(u64::from_le_bytes(x))
    }
    pub fn text(&mut self, n: usize, what: &str) -> Result<&'a str, String> {
        std::str::from_utf8(self.take(n)?).map_err(|_| format!("{what} is not UTF-8"))
    }
    /// A name with a u16 length prefix, 1..=128 bytes.
    pub fn name(&mut self, what: &str) -> Result<&'a str, String> {
        let n = self.u16()?;
        if !(1..=crate::names::NAME_MAX_BYTES).contains(&n) {
            return Err(format!("{what} length out of range"));
        }
        self.text(n, what)
    }
    pub fn done(&self) -> Result<(), String> {
        if self.at == self.b.len() {
            Ok(())
        } else {
            Err("entry longer than its lengths say".into())
        }
    }
}

/// Appends a name with its u16 length prefix.
pub fn put_name(out: &mut Vec<u8>, name: &str) {
    debug_assert!(name.len() <= usize::from(u16::MAX));
    out.extend_from_slice(&(name.len() as u16).to_le_bytes());
    out.extend_from_slice(name.as_bytes());
}

/// What every queue and stream entry starts with.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Head<'a> {
    pub namespace: &'a str,
    /// The queue's or stream's name.
    pub name: &'a str,
    /// The shard's clock for this kind of object when the entry was made (Unix ms).
    pub at_ms: u64,
}

/// Bytes of an encoded head.
pub const fn head_bytes(ns_len: usize, name_len: usize) -> usize {
    12 + ns_len + name_len
}

pub fn put_head(out: &mut Vec<u8>, h: &Head<'_>) {
    out.extend_from_slice(&(h.namespace.len() as u16).to_le_bytes());
    out.extend_from_slice(&(h.name.len() as u16).to_le_bytes());
    out.extend_from_slice(&h.at_ms.to_le_bytes());
    out.extend_from_slice(h.namespace.as_bytes());
    out.extend_from_slice(h.name.as_bytes());
}

pub fn read_head<'a>(r: &mut Reader<'a>, what: &str) -> Result<Head<'a>, String> {
    let (ns_len, name_len) = (r.u16()?, r.u16()?);
    let at_ms = r.u64()?;
    let max = crate::names::NAME_MAX_BYTES;
    if !(1..=max).contains(&ns_len) || !(1..=max).contains(&name_len) {
        return Err(format!("namespace or {what} length out of range"));
    }
    Ok(Head {
        namespace: r.text(ns_len, "namespace")?,
        name: r.text(name_len, what)?,
        at_ms,
    })
}
