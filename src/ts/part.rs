//! The lines of a write that one partition owns, as the coordinator hands them to the owner
//! (in memory only, never on disk): per line `u32 len` + its line key (`series::line_key`),
//! `u32 field count`, per field `u32 len` + name and 8 bytes f64, then the 8-byte timestamp in
//! ms. Names are valid UTF-8 (they come from `&str`).

/// Points in one `TS_POINTS` entry at most; a larger share of a write takes several parts.
pub const MAX_PART_POINTS: usize = 100_000;

/// The lines of a write that one partition owns, encoded by the coordinator.
#[derive(Debug, Default)]
pub struct Part {
    buf: Vec<u8>,
    pub points: usize,
}

/// One line of a part, borrowed from it.
pub struct PartLine<'a> {
    pub key: &'a [u8],
    pub fields: Vec<(&'a str, f64)>,
    pub ts_ms: i64,
}

struct PartReader<'a> {
    b: &'a [u8],
    at: usize,
}

impl<'a> PartReader<'a> {
    fn bytes(&mut self, n: usize) -> Result<&'a [u8], String> {
        let s = self.b.get(self.at..self.at + n).ok_or("part cut short")?;
        self.at += n;
        Ok(s)
    }

    fn u32(&mut self) -> Result<u32, String> {
        Ok(u32::from_le_bytes(
            self.bytes(4)?.try_into().map_err(|_| "part cut short")?,
        ))
    }

    fn u64(&mut self) -> Result<u64, String> {
        Ok(u64::from_le_bytes(
            self.bytes(8)?.try_into().map_err(|_| "part cut short")?,
        ))
    }
}

impl Part {
    /// Adds a line: its line key and its fields with their stored values.
    pub fn push<'f>(&mut self, key: &[u8], fields: impl Iterator<Item = (&'f str, f64)>, ts_ms: i64) {
        self.buf.extend_from_slice(&(key.len() as u32).to_le_bytes());
        self.buf.extend_from_slice(key);
        let count_at = self.buf.len();
        self.buf.extend_from_slice(&0u32.to_le_bytes());
        let mut n = 0u32;
        for (f, v) in fields {
            self.buf.extend_from_slice(&(f.len() as u32).to_le_bytes());
            self.buf.extend_from_slice(f.as_bytes());
            self.buf.extend_from_slice(&v.to_bits().to_le_bytes());
            n += 1;
        }
        self.buf[count_at..count_at + 4].copy_from_slice(&n.to_le_bytes());
        self.buf.extend_from_slice(&ts_ms.to_le_bytes());
        self.points += n as usize;
    }

    /// Appends another part's lines.
    pub fn append(&mut self, other: &Part) {
        self.buf.extend_from_slice(&other.buf);
        self.points += other.points;
    }

    pub fn is_empty(&self) -> bool {
        self.points == 0
    }

    /// Calls `f` with every line.
    pub fn lines(&self, mut f: impl FnMut(&PartLine<'_>)) -> Result<(), String> {
        let mut r = PartReader { b: &self.buf, at: 0 };
        let mut line = PartLine {
            key: &[],
            fields: Vec::new(),
            ts_ms: 0,
        };
        while r.at < self.buf.len() {
            let n = r.u32()? as usize;
            line.key = r.bytes(n)?;
            line.fields.clear();
            for _ in 0..r.u32()? {
                let n = r.u32()? as usize;
                let name = std::str::from_utf8(r.bytes(n)?).map_err(|_| "a field name of a part is not UTF-8")?;
                line.fields.push((name, f64::from_bits(r.u64()?)));
            }
            line.ts_ms = r.u64()? as i64;
            f(&line);
        }
        Ok(())
    }
}
