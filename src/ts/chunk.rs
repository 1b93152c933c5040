//! Compressed time-series chunks (`format-spec/ts-chunk.md`): one series' points, timestamps
//! by delta-of-delta, values either Gorilla XOR or scaled decimal integers, whichever is
//! smaller. Encoders and decoders side by side; decoding never trusts the input.

use std::fmt;

/// Points in one chunk, at most.
pub const MAX_POINTS: usize = 65535;

/// Encoding byte: timestamps delta-of-delta, values Gorilla XOR of the bit patterns.
pub const ENC_XOR: u8 = 1;
/// Encoding byte: values are `k / 10^d`; deltas of `k` minus a base, fixed bit width.
pub const ENC_DECIMAL_PACKED: u8 = 2;
/// Encoding byte: values are `k / 10^d`; deltas of `k` minus a base, zigzag + Rice code.
pub const ENC_DECIMAL_RICE: u8 = 3;

/// Bytes of the header shared by every encoding.
const COMMON_HEADER: usize = 23;
/// Header bytes of an XOR chunk.
pub const XOR_HEADER_BYTES: usize = COMMON_HEADER + 8;
/// Header bytes of a decimal chunk.
pub const DECIMAL_HEADER_BYTES: usize = COMMON_HEADER + 18;

/// Largest number of decimals `d` of the decimal encodings.
pub const MAX_DECIMALS: u8 = 18;
/// `|k|` of the decimal encodings is at most 2^53: every such integer is an exact f64.
pub const MAX_SCALED: i64 = 1 << 53;
/// A Rice-coded value whose quotient reaches this many one bits is written raw (64 bits).
pub const RICE_ESCAPE: u32 = 24;
/// Most bits one timestamp takes ('1111' + 64).
const MAX_TS_BITS: usize = 68;
/// Most bits one XOR value takes ('11' + 5 + 6 + 64).
const MAX_XOR_BITS: usize = 77;

/// The largest chunk the encoder writes and the decoder accepts: an XOR header, then the
/// worst case of both streams for 65535 points. (XOR is always a candidate and the encoder keeps
/// the smallest, so no encoder output is larger.)
pub const MAX_CHUNK_BYTES: usize =
    XOR_HEADER_BYTES + ((MAX_POINTS - 1) * MAX_TS_BITS).div_ceil(8) + ((MAX_POINTS - 1) * MAX_XOR_BITS).div_ceil(8);

/// 10^d for d in 0..=18, each exact in an f64.
const POW10: [f64; 19] = [
    1e0, 1e1, 1e2, 1e3, 1e4, 1e5, 1e6, 1e7, 1e8, 1e9, 1e10, 1e11, 1e12, 1e13, 1e14, 1e15, 1e16, 1e17, 1e18,
];

/// Why a chunk was refused.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ChunkError {
    /// The bytes end before the chunk does.
    Truncated,
    /// An encoding byte this version does not know (a newer writer, or corruption).
    UnknownEncoding(u8),
    /// The bytes are not a valid chunk.
    Corrupt(&'static str),
}

impl fmt::Display for ChunkError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ChunkError::Truncated => f.write_str("time-series chunk is truncated"),
            ChunkError::UnknownEncoding(e) => write!(f, "time-series chunk has unknown encoding {e}"),
            ChunkError::Corrupt(why) => write!(f, "time-series chunk is corrupt: {why}"),
        }
    }
}

impl std::error::Error for ChunkError {}

type Result<T> = std::result::Result<T, ChunkError>;

/// The fixed part of a chunk, readable without decoding any point.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ChunkHeader {
    /// The encoding byte: [`ENC_XOR`], [`ENC_DECIMAL_PACKED`] or [`ENC_DECIMAL_RICE`].
    pub encoding: u8,
    /// Points in the chunk, 1..=65535.
    pub count: u16,
    /// Timestamp of the first point (the smallest).
    pub first_ts: i64,
    /// Timestamp of the last point (the largest).
    pub last_ts: i64,
}

impl ChunkHeader {
    /// Whether the chunk may hold points with `from <= ts <= to`.
    pub fn overlaps(&self, from: i64, to: i64) -> bool {
        self.first_ts <= to && self.last_ts >= from
    }
}

fn zigzag(v: i64) -> u64 {
    ((v << 1) ^ (v >> 63)) as u64
}

fn unzigzag(z: u64) -> i64 {
    ((z >> 1) as i64) ^ -((z & 1) as i64)
}

/// Bits needed to write `v` (0 for 0).
fn bit_width(v: u64) -> u32 {
    64 - v.leading_zeros()
}

// ---------------------------------------------------------------------------------------------
// Bits

/// Where encoders put bits: a writer, or a counter to size a candidate encoding.
trait BitSink {
    /// Appends the low `n` bits of `v` (n ≤ 64; higher bits of `v` are zero), most significant first.
    fn put(&mut self, v: u64, n: u32);
}

/// Counts bits without writing them.
#[derive(Default)]
struct BitCount(usize);

impl BitSink for BitCount {
    fn put(&mut self, _v: u64, n: u32) {
        self.0 += n as usize;
    }
}

/// Writes bits most significant first; [`BitWriter::finish`] pads the last byte with zeros.
struct BitWriter<'a> {
    out: &'a mut Vec<u8>,
    acc: u128,
    /// Bits in `acc` not yet written (< 8 between calls).
    pending: u32,
}

impl<'a> BitWriter<'a> {
    fn new(out: &'a mut Vec<u8>) -> Self {
        BitWriter {
            out,
            acc: 0,
            pending: 0,
        }
    }

    fn finish(self) {
        if self.pending > 0 {
            self.out.push((self.acc << (8 - self.pending)) as u8);
        }
    }
}

impl BitSink for BitWriter<'_> {
    fn put(&mut self, v: u64, n: u32) {
        debug_assert!(n <= 64 && (n == 64 || v >> n == 0));
        if n == 0 {
            return;
        }
        self.acc = (self.acc << n) | u128::from(v);
        self.pending += n;
        while self.pending >= 8 {
            self.pending -= 8;
            self.out.push((self.acc >> self.pending) as u8);
        }
        self.acc &= (1u128 << self.pending) - 1;
    }
}

/// Reads bits most significant first from one stream.
#[derive(Clone, Debug)]
struct BitReader<'a> {
    bytes: &'a [u8],
    /// Next bit to read.
    pos: usize,
}

impl<'a> BitReader<'a> {
    fn new(bytes: &'a [u8]) -> Self {
        BitReader { bytes, pos: 0 }
    }

    fn bit(&mut self) -> Result<bool> {
        let byte = *self.bytes.get(self.pos / 8).ok_or(ChunkError::Truncated)?;
        let b = (byte >> (7 - self.pos % 8)) & 1 == 1;
        self.pos += 1;
        Ok(b)
    }

    fn bits(&mut self, n: u32) -> Result<u64> {
        if n == 0 {
            return Ok(0);
        }
        let n = n as usize;
        if self.pos + n > self.bytes.len() * 8 {
            return Err(ChunkError::Truncated);
        }
        let first = self.pos / 8;
        let last = (self.pos + n).div_ceil(8);
        let mut acc = 0u128;
        for &b in &self.bytes[first..last] {
            acc = (acc << 8) | u128::from(b);
        }
        let shift = (last - first) * 8 - self.pos % 8 - n;
        self.pos += n;
        Ok(((acc >> shift) & ((1u128 << n) - 1)) as u64)
    }

    /// Counts one bits up to `max`, consuming the terminating zero if there is one before it.
    fn ones(&mut self, max: u32) -> Result<u32> {
        let mut q = 0;
        while q < max && self.bit()? {
            q += 1;
        }
        Ok(q)
    }

    /// The stream must end here: only zero padding (< 8 bits) left.
    fn done(&self) -> Result<()> {
        if self.bytes.len() != self.pos.div_ceil(8) {
            return Err(ChunkError::Corrupt("bytes after the end of a stream"));
        }
        let used = self.pos % 8;
        if used != 0 && self.bytes[self.bytes.len() - 1] & (0xFF >> used) != 0 {
            return Err(ChunkError::Corrupt("padding bits are not zero"));
        }
        Ok(())
    }
}

// ---------------------------------------------------------------------------------------------
// Timestamps: delta of delta, zigzag, buckets

/// Bucket payload widths after the prefixes '10', '110', '1110'; '1111' is followed by 64 bits.
const TS_BUCKETS: [u32; 3] = [6, 13, 24];

fn put_dod(s: &mut impl BitSink, dod: i64) {
    let z = zigzag(dod);
    if z == 0 {
        s.put(0, 1);
        return;
    }
    for (i, &w) in TS_BUCKETS.iter().enumerate() {
        if z - 1 < 1 << w {
            // i + 1 ones then a zero: 0b10, 0b110, 0b1110.
            let n = i as u32 + 2;
            s.put(((1u64 << n) - 1) ^ 1, n);
            s.put(z - 1, w);
            return;
        }
    }
    s.put(0b1111, 4);
    s.put(z, 64);
}

fn read_dod(r: &mut BitReader<'_>) -> Result<i64> {
    let z = match r.ones(4)? {
        0 => 0,
        4 => r.bits(64)?,
        ones => r.bits(TS_BUCKETS[ones as usize - 1])? + 1,
    };
    Ok(unzigzag(z))
}

/// Writes the timestamp stream (points 1.. relative to point 0).
fn put_timestamps(s: &mut impl BitSink, points: &[(i64, f64)]) {
    let mut prev = points[0].0;
    let mut prev_delta = 0i64;
    for &(t, _) in &points[1..] {
        let delta = t.wrapping_sub(prev);
        put_dod(s, delta.wrapping_sub(prev_delta));
        prev_delta = delta;
        prev = t;
    }
}

// ---------------------------------------------------------------------------------------------
// Values: Gorilla XOR

fn put_xor(s: &mut impl BitSink, points: &[(i64, f64)]) {
    let mut prev = points[0].1.to_bits();
    // The previous window: leading zeros and length of the meaningful bits; len 0 = none yet.
    let (mut leading, mut len) = (0u32, 0u32);
    for &(_, v) in &points[1..] {
        let bits = v.to_bits();
        let x = bits ^ prev;
        prev = bits;
        if x == 0 {
            s.put(0, 1);
            continue;
        }
        let lz = x.leading_zeros().min(31);
        let tz = x.trailing_zeros();
        if len != 0 && lz >= leading && tz >= 64 - leading - len {
            s.put(0b10, 2);
            s.put(x >> (64 - leading - len), len);
        } else {
            let mlen = 64 - lz - tz;
            s.put(0b11, 2);
            s.put(u64::from(lz), 5);
            s.put(u64::from(mlen & 63), 6);
            s.put(x >> tz, mlen);
            leading = lz;
            len = mlen;
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Values: scaled decimals

/// `k` with `(k as f64) / 10^d` bit-identical to `v`, if there is one with `|k| <= 2^53`.
fn scaled(v: f64, d: u8) -> Option<i64> {
    let p = POW10[usize::from(d)];
    let x = (v * p).round();
    if !x.is_finite() || x.abs() > MAX_SCALED as f64 {
        return None;
    }
    let k = x as i64;
    ((k as f64 / p).to_bits() == v.to_bits()).then_some(k)
}

/// The fewest decimals `d` with every value `k / 10^d` exactly, and the `k`s.
fn find_decimals(points: &[(i64, f64)]) -> Option<(u8, Vec<i64>)> {
    let mut d = 0u8;
    let mut ks: Vec<i64> = Vec::with_capacity(points.len());
    for &(_, v) in points {
        let k = loop {
            if let Some(k) = scaled(v, d) {
                break k;
            }
            if d == MAX_DECIMALS {
                return None;
            }
            d += 1;
            // Values exact at fewer decimals are exact at more (same real number, exact
            // operands, correctly rounded division): rescale the ones already seen.
            for k in ks.iter_mut() {
                *k = k.checked_mul(10).filter(|k: &i64| k.abs() <= MAX_SCALED)?;
            }
        };
        ks.push(k);
    }
    // Check the claim above rather than trust it.
    let p = POW10[usize::from(d)];
    let exact = points
        .iter()
        .zip(&ks)
        .all(|(&(_, v), &k)| (k as f64 / p).to_bits() == v.to_bits());
    exact.then_some((d, ks))
}

/// How the deltas of the scaled integers are written.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum DeltaCode {
    /// `delta - base` (≥ 0) in a fixed number of bits.
    Packed(u32),
    /// `zigzag(delta - base)` Rice-coded with this many low bits.
    Rice(u32),
}

fn put_rice(s: &mut impl BitSink, z: u64, r: u32) {
    let q = z >> r;
    if q < u64::from(RICE_ESCAPE) {
        // q ones, a zero.
        s.put(((1u64 << q) - 1) << 1, q as u32 + 1);
        s.put(z & ((1u64 << r) - 1), r);
    } else {
        s.put((1u64 << RICE_ESCAPE) - 1, RICE_ESCAPE);
        s.put(z, 64);
    }
}

fn rice_bits(z: u64, r: u32) -> usize {
    let q = z >> r;
    if q < u64::from(RICE_ESCAPE) {
        q as usize + 1 + r as usize
    } else {
        (RICE_ESCAPE + 64) as usize
    }
}

/// The best base and parameter for each delta code: (base, code, stream bits).
fn plan_deltas(deltas: &[i64]) -> [(i64, DeltaCode, usize); 2] {
    if deltas.is_empty() {
        return [(0, DeltaCode::Packed(0), 0), (0, DeltaCode::Rice(0), 0)];
    }
    let (min, max) = deltas
        .iter()
        .fold((i64::MAX, i64::MIN), |(lo, hi), &d| (lo.min(d), hi.max(d)));
    // |k| ≤ 2^53, so deltas and their differences fit easily.
    let w = bit_width((max - min) as u64);
    let packed = (min, DeltaCode::Packed(w), deltas.len() * w as usize);

    let mut sorted = deltas.to_vec();
    sorted.sort_unstable();
    let median = sorted[sorted.len() / 2];
    let zs: Vec<u64> = deltas.iter().map(|&d| zigzag(d - median)).collect();
    let top = bit_width(zs.iter().copied().max().unwrap_or(0));
    let mut best = (DeltaCode::Rice(0), usize::MAX);
    for r in 0..=top.min(63) {
        let bits: usize = zs.iter().map(|&z| rice_bits(z, r)).sum();
        if bits < best.1 {
            best = (DeltaCode::Rice(r), bits);
        }
    }
    [packed, (median, best.0, best.1)]
}

fn put_deltas(s: &mut impl BitSink, deltas: &[i64], base: i64, code: DeltaCode) {
    for &d in deltas {
        match code {
            DeltaCode::Packed(w) => s.put((d - base) as u64, w),
            DeltaCode::Rice(r) => put_rice(s, zigzag(d - base), r),
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Encoding

/// Appends the chunk of `points` to `out`, choosing the smallest value encoding.
///
/// Panics unless `1 <= points.len() <= 65535` and the timestamps strictly increase (the caller
/// sorts and dedups).
pub fn encode(points: &[(i64, f64)], out: &mut Vec<u8>) {
    assert!(
        (1..=MAX_POINTS).contains(&points.len()),
        "a chunk holds 1..={MAX_POINTS} points, not {}",
        points.len()
    );
    assert!(
        points.windows(2).all(|w| w[0].0 < w[1].0),
        "chunk timestamps must strictly increase"
    );
    let start = out.len();
    let mut ts_bits = BitCount::default();
    put_timestamps(&mut ts_bits, points);
    let ts_bytes = ts_bits.0.div_ceil(8);

    let mut xor_bits = BitCount::default();
    put_xor(&mut xor_bits, points);
    let xor_total = XOR_HEADER_BYTES + xor_bits.0.div_ceil(8);

    let decimal = find_decimals(points).and_then(|(d, ks)| {
        let deltas: Vec<i64> = ks.windows(2).map(|w| w[1] - w[0]).collect();
        let plans = plan_deltas(&deltas);
        let (base, code, bits) = if plans[1].2 < plans[0].2 { plans[1] } else { plans[0] };
        let total = DECIMAL_HEADER_BYTES + bits.div_ceil(8);
        (total <= xor_total).then_some((d, ks[0], deltas, base, code))
    });

    let encoding = match decimal {
        None => ENC_XOR,
        Some((_, _, _, _, DeltaCode::Packed(_))) => ENC_DECIMAL_PACKED,
        Some((_, _, _, _, DeltaCode::Rice(_))) => ENC_DECIMAL_RICE,
    };
    out.push(encoding);
    out.extend_from_slice(&(points.len() as u16).to_le_bytes());
    out.extend_from_slice(&points[0].0.to_le_bytes());
    out.extend_from_slice(&points[points.len() - 1].0.to_le_bytes());
    out.extend_from_slice(&(ts_bytes as u32).to_le_bytes());
    match &decimal {
        None => out.extend_from_slice(&points[0].1.to_bits().to_le_bytes()),
        Some((d, k0, _, base, code)) => {
            let param = match *code {
                DeltaCode::Packed(w) => w,
                DeltaCode::Rice(r) => r,
            };
            out.push(*d);
            out.push(param as u8);
            out.extend_from_slice(&k0.to_le_bytes());
            out.extend_from_slice(&base.to_le_bytes());
        }
    }
    let mut w = BitWriter::new(out);
    put_timestamps(&mut w, points);
    w.finish();
    debug_assert_eq!(
        out.len() - start,
        ts_bytes
            + if decimal.is_some() {
                DECIMAL_HEADER_BYTES
            } else {
                XOR_HEADER_BYTES
            }
    );
    let mut w = BitWriter::new(out);
    match &decimal {
        None => put_xor(&mut w, points),
        Some((_, _, deltas, base, code)) => put_deltas(&mut w, deltas, *base, *code),
    }
    w.finish();
    debug_assert!(out.len() - start <= MAX_CHUNK_BYTES);
}

/// Encodes `points` into a new buffer.
pub fn encode_to_vec(points: &[(i64, f64)]) -> Vec<u8> {
    let mut out = Vec::new();
    encode(points, &mut out);
    out
}

// ---------------------------------------------------------------------------------------------
// Decoding

fn le_u64(b: &[u8], at: usize) -> Result<u64> {
    let s = b.get(at..at + 8).ok_or(ChunkError::Truncated)?;
    let mut a = [0u8; 8];
    a.copy_from_slice(s);
    Ok(u64::from_le_bytes(a))
}

/// Reads and checks the header, without touching the point streams.
pub fn header(bytes: &[u8]) -> Result<ChunkHeader> {
    let encoding = *bytes.first().ok_or(ChunkError::Truncated)?;
    if !matches!(encoding, ENC_XOR | ENC_DECIMAL_PACKED | ENC_DECIMAL_RICE) {
        return Err(ChunkError::UnknownEncoding(encoding));
    }
    let count = bytes.get(1..3).ok_or(ChunkError::Truncated)?;
    let count = u16::from_le_bytes([count[0], count[1]]);
    let first_ts = le_u64(bytes, 3)? as i64;
    let last_ts = le_u64(bytes, 11)? as i64;
    if count == 0 {
        return Err(ChunkError::Corrupt("no points"));
    }
    // Strictly increasing: last − first ≥ count − 1 (and = 0 for one point).
    let span = (last_ts as i128) - (first_ts as i128);
    if span < i128::from(count) - 1 || (count == 1 && span != 0) {
        return Err(ChunkError::Corrupt("timestamp range does not fit the point count"));
    }
    Ok(ChunkHeader {
        encoding,
        count,
        first_ts,
        last_ts,
    })
}

/// The running state of the value stream.
#[derive(Clone, Debug)]
enum Values {
    Xor {
        prev: u64,
        leading: u32,
        /// 0 until the first window is set.
        len: u32,
    },
    Decimal {
        scale: f64,
        k: i64,
        base: i64,
        code: DeltaCode,
    },
}

impl Values {
    fn current(&self) -> f64 {
        match *self {
            Values::Xor { prev, .. } => f64::from_bits(prev),
            Values::Decimal { scale, k, .. } => k as f64 / scale,
        }
    }

    fn next(&mut self, r: &mut BitReader<'_>) -> Result<f64> {
        match self {
            Values::Xor { prev, leading, len } => {
                if r.bit()? {
                    let x = if r.bit()? {
                        let lz = r.bits(5)? as u32;
                        let mlen = match r.bits(6)? as u32 {
                            0 => 64,
                            n => n,
                        };
                        if lz + mlen > 64 {
                            return Err(ChunkError::Corrupt("XOR window past 64 bits"));
                        }
                        *leading = lz;
                        *len = mlen;
                        r.bits(mlen)? << (64 - lz - mlen)
                    } else {
                        if *len == 0 {
                            return Err(ChunkError::Corrupt("XOR window reused before one was set"));
                        }
                        r.bits(*len)? << (64 - *leading - *len)
                    };
                    *prev ^= x;
                }
                Ok(f64::from_bits(*prev))
            }
            Values::Decimal { scale, k, base, code } => {
                let delta = match *code {
                    DeltaCode::Packed(w) => (r.bits(w)? as i64).wrapping_add(*base),
                    DeltaCode::Rice(rb) => {
                        let q = r.ones(RICE_ESCAPE)?;
                        let z = if q == RICE_ESCAPE {
                            r.bits(64)?
                        } else {
                            let z = (u128::from(q) << rb) | u128::from(r.bits(rb)?);
                            u64::try_from(z).map_err(|_| ChunkError::Corrupt("Rice value past 64 bits"))?
                        };
                        unzigzag(z).wrapping_add(*base)
                    }
                };
                let next = k.wrapping_add(delta);
                if next.unsigned_abs() > MAX_SCALED as u64 {
                    return Err(ChunkError::Corrupt("scaled value out of range"));
                }
                *k = next;
                Ok(next as f64 / *scale)
            }
        }
    }
}

/// Streams a chunk's points without allocating. Each item is a point or the error that ends
/// the chunk; after an error the iterator ends. The last point is given only once the whole
/// chunk is checked (streams fully used, padding zero, last timestamp as in the header).
#[derive(Clone, Debug)]
pub struct Decoder<'a> {
    header: ChunkHeader,
    ts: BitReader<'a>,
    vals: BitReader<'a>,
    values: Values,
    /// Index of the next point; `count` when done.
    next: u32,
    prev_ts: i64,
    prev_delta: i64,
}

impl<'a> Decoder<'a> {
    /// Checks the header and the stream lengths.
    pub fn new(bytes: &'a [u8]) -> Result<Decoder<'a>> {
        let header = header(bytes)?;
        if bytes.len() > MAX_CHUNK_BYTES {
            return Err(ChunkError::Corrupt("chunk larger than the largest chunk"));
        }
        let ts_bytes = bytes.get(19..23).ok_or(ChunkError::Truncated)?;
        let ts_bytes = u32::from_le_bytes([ts_bytes[0], ts_bytes[1], ts_bytes[2], ts_bytes[3]]) as usize;
        let (values, header_bytes) = if header.encoding == ENC_XOR {
            let first = le_u64(bytes, 23)?;
            (
                Values::Xor {
                    prev: first,
                    leading: 0,
                    len: 0,
                },
                XOR_HEADER_BYTES,
            )
        } else {
            let p = bytes.get(23..25).ok_or(ChunkError::Truncated)?;
            let (d, param) = (p[0], u32::from(p[1]));
            let k = le_u64(bytes, 25)? as i64;
            let base = le_u64(bytes, 33)? as i64;
            if d > MAX_DECIMALS {
                return Err(ChunkError::Corrupt("too many decimals"));
            }
            if k.unsigned_abs() > MAX_SCALED as u64 {
                return Err(ChunkError::Corrupt("scaled value out of range"));
            }
            let code = if header.encoding == ENC_DECIMAL_PACKED {
                if param > 64 {
                    return Err(ChunkError::Corrupt("packed width over 64"));
                }
                DeltaCode::Packed(param)
            } else {
                if param > 63 {
                    return Err(ChunkError::Corrupt("Rice parameter over 63"));
                }
                DeltaCode::Rice(param)
            };
            (
                Values::Decimal {
                    scale: POW10[usize::from(d)],
                    k,
                    base,
                    code,
                },
                DECIMAL_HEADER_BYTES,
            )
        };
        let rest = bytes.get(header_bytes..).ok_or(ChunkError::Truncated)?;
        if ts_bytes > rest.len() {
            return Err(ChunkError::Truncated);
        }
        let (ts, vals) = rest.split_at(ts_bytes);
        Ok(Decoder {
            header,
            ts: BitReader::new(ts),
            vals: BitReader::new(vals),
            values,
            next: 0,
            prev_ts: header.first_ts,
            prev_delta: 0,
        })
    }

    pub fn header(&self) -> &ChunkHeader {
        &self.header
    }

    fn step(&mut self) -> Result<(i64, f64)> {
        let point = if self.next == 0 {
            (self.header.first_ts, self.values.current())
        } else {
            let dod = read_dod(&mut self.ts)?;
            let delta = self.prev_delta.wrapping_add(dod);
            let t = self.prev_ts.wrapping_add(delta);
            if t <= self.prev_ts {
                return Err(ChunkError::Corrupt("timestamps do not increase"));
            }
            if t > self.header.last_ts {
                return Err(ChunkError::Corrupt("timestamp after the header's last"));
            }
            self.prev_delta = delta;
            self.prev_ts = t;
            (t, self.values.next(&mut self.vals)?)
        };
        if self.next + 1 == u32::from(self.header.count) {
            if point.0 != self.header.last_ts {
                return Err(ChunkError::Corrupt("last timestamp differs from the header's"));
            }
            self.ts.done()?;
            self.vals.done()?;
        }
        Ok(point)
    }
}

impl Iterator for Decoder<'_> {
    type Item = Result<(i64, f64)>;

    fn next(&mut self) -> Option<Self::Item> {
        let count = u32::from(self.header.count);
        if self.next >= count {
            return None;
        }
        let r = self.step();
        self.next = if r.is_ok() { self.next + 1 } else { count };
        Some(r)
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        let left = (u32::from(self.header.count) - self.next) as usize;
        (0, Some(left))
    }
}

impl std::iter::FusedIterator for Decoder<'_> {}

/// Appends the chunk's points to `out`; on error `out` is left as it was.
pub fn decode_into(bytes: &[u8], out: &mut Vec<(i64, f64)>) -> Result<()> {
    let d = Decoder::new(bytes)?;
    let start = out.len();
    out.reserve(usize::from(d.header.count));
    for p in d {
        match p {
            Ok(p) => out.push(p),
            Err(e) => {
                out.truncate(start);
                return Err(e);
            }
        }
    }
    Ok(())
}

/// Decodes a whole chunk.
pub fn decode(bytes: &[u8]) -> Result<Vec<(i64, f64)>> {
    let mut out = Vec::new();
    decode_into(bytes, &mut out)?;
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    use crate::test_rng::Rng;

    fn bits(points: &[(i64, f64)]) -> Vec<(i64, u64)> {
        points.iter().map(|&(t, v)| (t, v.to_bits())).collect()
    }

    /// Encodes, decodes (all three ways) and compares bits; returns the chunk.
    #[track_caller]
    fn round_trip(points: &[(i64, f64)]) -> Vec<u8> {
        let mut out = vec![0xAB];
        encode(points, &mut out);
        let chunk = out.split_off(1);
        assert!(chunk.len() <= MAX_CHUNK_BYTES);
        let got = decode(&chunk).expect("decodes");
        assert_eq!(bits(&got), bits(points));
        let h = header(&chunk).unwrap();
        assert_eq!(usize::from(h.count), points.len());
        assert_eq!((h.first_ts, h.last_ts), (points[0].0, points[points.len() - 1].0));
        let streamed: Vec<(i64, f64)> = Decoder::new(&chunk).unwrap().map(|p| p.unwrap()).collect();
        assert_eq!(bits(&streamed), bits(points));
        let mut into = vec![(7, 7.0)];
        decode_into(&chunk, &mut into).unwrap();
        assert_eq!(bits(&into[1..]), bits(points));
        chunk
    }

    fn regular(start: i64, step: i64, values: &[f64]) -> Vec<(i64, f64)> {
        values
            .iter()
            .enumerate()
            .map(|(i, &v)| (start + i as i64 * step, v))
            .collect()
    }

    #[test]
    fn constant_series_is_tiny() {
        let pts = regular(1_700_000_000_000, 10_000, &[42.0; 1000]);
        let c = round_trip(&pts);
        assert_eq!(c[0], ENC_DECIMAL_PACKED);
        // Header, 3 bytes for the first delta, 1 bit per later timestamp, 0 bits per value.
        assert!(c.len() <= DECIMAL_HEADER_BYTES + 3 + 125 + 1, "{}", c.len());
        // π has 16 significant digits: 3141592653589793 / 10^15, constant deltas.
        let pi = regular(0, 1, &[std::f64::consts::PI; 1000]);
        assert_eq!(round_trip(&pi)[0], ENC_DECIMAL_PACKED);
        // 0.30000000000000004 needs 17 digits (k > 2^53): XOR, one bit a repeat.
        let c = round_trip(&regular(0, 1, &[0.1 + 0.2; 1000]));
        assert_eq!(c[0], ENC_XOR);
        assert_eq!(
            c.len(),
            XOR_HEADER_BYTES + (8 + 998usize).div_ceil(8) + 999usize.div_ceil(8)
        );
    }

    #[test]
    fn single_point_and_full_chunk() {
        for v in [0.0, -0.0, 1.5, f64::NAN, f64::INFINITY, 1e300] {
            for t in [0, -1, i64::MIN, i64::MAX] {
                let c = round_trip(&[(t, v)]);
                assert!(c.len() <= DECIMAL_HEADER_BYTES);
            }
        }
        let mut rng = Rng(7);
        let mut t = -5_000_000i64;
        let pts: Vec<(i64, f64)> = (0..MAX_POINTS)
            .map(|_| {
                t += rng.range(1, 20_000);
                (t, f64::from_bits(rng.next_u64()))
            })
            .collect();
        round_trip(&pts);
        let decimals: Vec<(i64, f64)> = pts
            .iter()
            .map(|&(t, _)| (t, rng.range(-99_999, 99_999) as f64 / 1000.0))
            .collect();
        assert_ne!(round_trip(&decimals)[0], ENC_XOR);
    }

    #[test]
    #[should_panic(expected = "strictly increase")]
    fn encoder_refuses_unsorted() {
        encode_to_vec(&[(2, 1.0), (2, 1.0)]);
    }

    #[test]
    #[should_panic(expected = "a chunk holds")]
    fn encoder_refuses_empty() {
        encode_to_vec(&[]);
    }

    #[test]
    fn timestamps_regular_irregular_negative_and_extreme() {
        let vals = [1.0, 2.0, 3.0, 4.0, 5.0];
        round_trip(&regular(1_700_000_000_000, 10_000, &vals));
        round_trip(&regular(-1_700_000_000_000, 1, &vals));
        round_trip(&regular(-20_000, 10_000, &vals));
        round_trip(&[
            (1, 1.0),
            (2, 1.0),
            (1_000_000, 1.0),
            (1_000_001, 1.0),
            (9_000_000_000_000, 1.0),
        ]);
        round_trip(&[(i64::MIN, 1.0), (i64::MAX, 2.0)]);
        round_trip(&[(i64::MIN, 1.0), (0, 2.0), (i64::MAX, 3.0)]);
        round_trip(&[
            (i64::MIN, 1.0),
            (i64::MIN + 1, 2.0),
            (i64::MAX - 1, 3.0),
            (i64::MAX, 4.0),
        ]);
        round_trip(&[(i64::MIN, 1.0), (i64::MAX - 1, 2.0), (i64::MAX, 3.0)]);
        // Every bucket boundary of the delta of delta, both signs.
        let mut pts = vec![(0i64, 0.0)];
        let mut t = 0i64;
        let mut delta = 1i64 << 40;
        for w in [0u32, 6, 13, 24, 40] {
            for dd in [(1i64 << w) / 2 - 1, (1i64 << w) / 2, (1i64 << w) / 2 + 1] {
                for sign in [1, -1] {
                    delta += sign * dd;
                    t += delta;
                    pts.push((t, 0.0));
                }
            }
        }
        round_trip(&pts);
        // A 10 s interval costs one bit a point after the first delta.
        let c = round_trip(&regular(0, 10_000, &[0.5; 1025]));
        assert_eq!(
            u32::from_le_bytes(c[19..23].try_into().unwrap()),
            (28 + 1023usize).div_ceil(8) as u32,
            "4 + 24 bits for the first delta"
        );
    }

    #[test]
    fn special_values_keep_their_bits() {
        let specials = [
            f64::NAN,
            -f64::NAN,
            f64::from_bits(0x7FF0_0000_0000_0001), // signalling NaN
            f64::from_bits(0x7FF8_DEAD_BEEF_0001), // quiet NaN with a payload
            f64::from_bits(0xFFFF_FFFF_FFFF_FFFF),
            0.0,
            -0.0,
            f64::INFINITY,
            f64::NEG_INFINITY,
            f64::MIN_POSITIVE,
            f64::from_bits(1), // smallest subnormal
            -f64::from_bits(0x000F_FFFF_FFFF_FFFF),
            f64::MIN,
            f64::MAX,
            f64::EPSILON,
            1.0,
            0.1,
        ];
        round_trip(&regular(0, 1000, &specials));
        let mut rev = specials.to_vec();
        rev.reverse();
        round_trip(&regular(0, 1000, &rev));
        for &s in &specials {
            // One special among decimals: the decimal encodings must not take it.
            let mut vals: Vec<f64> = (0..50).map(|i| i as f64 / 10.0).collect();
            vals[25] = s;
            round_trip(&regular(5, 7, &vals));
            round_trip(&regular(5, 7, &[s; 20]));
        }
        // -0.0 is not 0 / 10^d: it must fall back to XOR.
        let c = round_trip(&regular(0, 1, &[1.0, -0.0, 2.0]));
        assert_eq!(c[0], ENC_XOR);
    }

    #[test]
    fn decimals_and_their_limits() {
        assert_eq!(scaled(21.37, 2), Some(2137));
        assert_eq!(scaled(21.37, 1), None);
        assert_eq!(scaled(-0.0, 0), None);
        assert_eq!(scaled(f64::NAN, 3), None);
        assert_eq!(scaled(f64::INFINITY, 0), None);
        assert_eq!(
            find_decimals(&regular(0, 1, &[1.0, 21.37, -0.5])),
            Some((2, vec![100, 2137, -50]))
        );
        assert_eq!(find_decimals(&regular(0, 1, &[0.1 + 0.2])), None);
        assert_eq!(find_decimals(&regular(0, 1, &[1.5e-17, 2.0])), None, "2 * 10^18 > 2^53");
        assert_eq!(
            find_decimals(&regular(0, 1, &[1.5e-17, 2e-18])),
            Some((18, vec![15, 2]))
        );
        assert_eq!(find_decimals(&regular(0, 1, &[1e300])), None);
        // 2^53 is the largest scaled integer; one beyond it falls back to XOR.
        for v in [9007199254740992.0, -9007199254740992.0, 9007199254740994.0, 0.1 + 0.2] {
            let pts = regular(0, 1, &[v, 1.0, v, 2.0]);
            round_trip(&pts);
        }
        // Wild but decimal jumps: Rice escapes and wide packed deltas.
        let jumps = [0.0, 9e15, -9e15, 1.0, 0.0, 8e15, 1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 7.0];
        round_trip(&regular(0, 1, &jumps));
        let mut pts = regular(0, 1, &[0.0; 300]);
        for (i, p) in pts.iter_mut().enumerate() {
            p.1 = if i % 50 == 7 { 9e15 - i as f64 } else { (i % 3) as f64 };
        }
        round_trip(&pts);
    }

    #[test]
    fn both_decimal_delta_codes_round_trip() {
        // Force each code through the writer and decoder, whatever the encoder would pick.
        let mut rng = Rng(3);
        let mut k = 0i64;
        let ks: Vec<i64> = (0..500)
            .map(|i| {
                k += if i % 97 == 0 {
                    rng.range(-1 << 40, 1 << 40)
                } else {
                    rng.range(-9, 9)
                };
                k
            })
            .collect();
        let pts: Vec<(i64, f64)> = ks
            .iter()
            .enumerate()
            .map(|(i, &k)| (i as i64, k as f64 / 1000.0))
            .collect();
        let deltas: Vec<i64> = ks.windows(2).map(|w| w[1] - w[0]).collect();
        for (base, code, bits) in plan_deltas(&deltas) {
            let mut out = Vec::new();
            out.push(if matches!(code, DeltaCode::Packed(_)) {
                ENC_DECIMAL_PACKED
            } else {
                ENC_DECIMAL_RICE
            });
            out.extend_from_slice(&(pts.len() as u16).to_le_bytes());
            out.extend_from_slice(&pts[0].0.to_le_bytes());
            out.extend_from_slice(&pts[pts.len() - 1].0.to_le_bytes());
            let mut ts = Vec::new();
            let mut w = BitWriter::new(&mut ts);
            put_timestamps(&mut w, &pts);
            w.finish();
            out.extend_from_slice(&(ts.len() as u32).to_le_bytes());
            out.push(3);
            out.push(match code {
                DeltaCode::Packed(w) | DeltaCode::Rice(w) => w as u8,
            });
            out.extend_from_slice(&ks[0].to_le_bytes());
            out.extend_from_slice(&base.to_le_bytes());
            out.extend_from_slice(&ts);
            let before = out.len();
            let mut w = BitWriter::new(&mut out);
            put_deltas(&mut w, &deltas, base, code);
            w.finish();
            assert_eq!(out.len() - before, bits.div_ceil(8));
            assert_eq!(bits_of(&decode(&out).unwrap()), bits_of(&pts), "{code:?}");
        }
    }

    fn bits_of(p: &[(i64, f64)]) -> Vec<(i64, u64)> {
        bits(p)
    }

    /// Every prefix is refused, as are trailing bytes; flipped bits and random bytes never panic.
    #[track_caller]
    fn check_damage(chunk: &[u8], rng: &mut Rng) {
        for n in 0..chunk.len() {
            assert!(decode(&chunk[..n]).is_err(), "prefix {n} of {}", chunk.len());
        }
        let mut long = chunk.to_vec();
        long.push(0);
        assert!(decode(&long).is_err(), "a trailing byte");
        for _ in 0..200 {
            let mut bad = chunk.to_vec();
            let bit = rng.below(bad.len() as u64 * 8) as usize;
            bad[bit / 8] ^= 1 << (bit % 8);
            if let Ok(pts) = decode(&bad) {
                let h = header(&bad).unwrap();
                assert_eq!(pts.len(), usize::from(h.count));
                assert!(pts.windows(2).all(|w| w[0].0 < w[1].0));
                assert_eq!((pts[0].0, pts[pts.len() - 1].0), (h.first_ts, h.last_ts));
            }
        }
    }

    #[test]
    fn damaged_chunks_are_refused_without_panics() {
        let mut rng = Rng(11);
        let mut cases: Vec<Vec<(i64, f64)>> = vec![
            regular(0, 10_000, &[1.0]),
            regular(0, 10_000, &[1.0, 1.0, 1.0]),
            regular(-9, 1000, &[21.37, 21.41, 21.4, -3.5, 100.25]),
            regular(0, 1, &[f64::NAN, -0.0, 1e-310, f64::MAX]),
            vec![(i64::MIN, 0.1), (i64::MAX, 0.2)],
        ];
        let mut k = 500i64;
        cases.push(
            (0..200)
                .map(|i| {
                    k += rng.range(-3, 3);
                    (i * 1000 + rng.range(-3, 3), k as f64 / 10.0)
                })
                .collect(),
        );
        cases.push((0..200).map(|i| (i * 7, (i as f64).sin())).collect());
        for pts in &cases {
            let c = round_trip(pts);
            check_damage(&c, &mut rng);
        }
        for len in 0..200 {
            for _ in 0..50 {
                let mut b: Vec<u8> = (0..len).map(|_| rng.next_u64() as u8).collect();
                if let Some(first) = b.first_mut() {
                    *first = 1 + (*first % 3);
                }
                let _ = decode(&b);
            }
        }
        assert_eq!(decode(&[0]), Err(ChunkError::UnknownEncoding(0)));
        assert_eq!(decode(&[4, 1, 0]), Err(ChunkError::UnknownEncoding(4)));
        assert_eq!(decode(&[]), Err(ChunkError::Truncated));
        // Header lies: no points, a range too short for the count, a last timestamp beyond the data.
        let mut c = encode_to_vec(&regular(0, 10, &[1.0, 2.0, 3.0]));
        c[1] = 0;
        assert!(decode(&c).is_err());
        let mut c = encode_to_vec(&regular(0, 10, &[1.0, 2.0, 3.0]));
        c[11..19].copy_from_slice(&1i64.to_le_bytes());
        assert_eq!(
            header(&c).unwrap_err(),
            ChunkError::Corrupt("timestamp range does not fit the point count")
        );
        let mut c = encode_to_vec(&regular(0, 10, &[1.0, 2.0, 3.0]));
        c[11..19].copy_from_slice(&21i64.to_le_bytes());
        assert!(decode(&c).is_err());
        assert!(decode(&vec![1u8; MAX_CHUNK_BYTES + 1]).is_err());
    }

    #[test]
    fn decoder_stops_at_the_first_error() {
        let c = encode_to_vec(&regular(0, 10, &[0.5, 1.5, 2.5, 3.25]));
        let mut long = c.clone();
        long.push(0);
        let items: Vec<_> = Decoder::new(&long).unwrap().collect();
        assert_eq!(items.len(), 4);
        assert!(items[..3].iter().all(|i| i.is_ok()));
        assert!(items[3].is_err(), "the last point is refused with the trailing byte");
    }

    #[test]
    fn max_chunk_bytes_bounds_the_worst_chunk() {
        assert_eq!(MAX_CHUNK_BYTES, 31 + 557_039 + 630_765);
        // Wild timestamp jumps and values that differ in every bit: close to the worst case.
        let mut rng = Rng(5);
        let pts: Vec<(i64, f64)> = (0..MAX_POINTS as i64)
            .map(|i| {
                let t = i64::MIN / 2 + i * (1 << 44) + rng.range(0, 1 << 43);
                let v = if i % 2 == 0 {
                    f64::from_bits(0x5555_5555_5555_5555)
                } else {
                    f64::from_bits(0xAAAA_AAAA_AAAA_AAAB)
                };
                (t, v)
            })
            .collect();
        let c = round_trip(&pts);
        assert!(c.len() <= MAX_CHUNK_BYTES);
        println!("near-worst chunk: {} bytes of at most {MAX_CHUNK_BYTES}", c.len());
    }

    /// Random series from a mix of timestamp and value shapes.
    fn random_series(rng: &mut Rng) -> Vec<(i64, f64)> {
        let n = match rng.below(10) {
            0 => 1,
            1 => rng.range(1, 5) as usize,
            9 => rng.range(1, 5000) as usize,
            _ => rng.range(2, 400) as usize,
        };
        let mut ts = Vec::with_capacity(n);
        let mut t = match rng.below(4) {
            0 => i64::MIN + rng.range(0, 1000),
            1 => rng.range(-1 << 50, 1 << 50),
            2 => i64::MAX - 100_000_000,
            _ => 1_700_000_000_000,
        };
        let shape = rng.below(5);
        let step = [1, 1000, 10_000, 60_000][rng.below(4) as usize];
        for _ in 0..n {
            ts.push(t);
            let d = match shape {
                0 => step,
                1 => step + rng.range(-5, 5).max(1 - step),
                2 => {
                    let w = rng.range(1, 40);
                    rng.range(1, 1 << w)
                }
                3 => rng.range(1, 3),
                _ => (rng.next_u64() >> 8) as i64 + 1,
            };
            match t.checked_add(d) {
                Some(next) => t = next,
                None => break,
            }
        }
        let decimals = rng.range(0, 6) as i32;
        let vshape = rng.below(7);
        let mut k = rng.range(-100_000, 100_000);
        let mut x = rng.normal() * 100.0;
        let specials = [
            f64::NAN,
            -0.0,
            f64::INFINITY,
            f64::NEG_INFINITY,
            f64::from_bits(3),
            f64::MAX,
            f64::MIN,
        ];
        ts.into_iter()
            .map(|t| {
                k += rng.range(-20, 20);
                x += rng.normal();
                let v = match vshape {
                    0 => k as f64 / 10f64.powi(decimals),
                    1 => x,
                    2 => f64::from_bits(rng.next_u64()),
                    3 => specials[rng.below(specials.len() as u64) as usize],
                    4 if rng.below(20) == 0 => specials[rng.below(specials.len() as u64) as usize],
                    4 => k as f64 / 100.0,
                    5 => 3.0,
                    _ => (k * 1_000_000_007) as f64,
                };
                (t, v)
            })
            .collect()
    }

    #[test]
    fn property_random_series_round_trip() {
        let mut rng = Rng(2024);
        let mut by_encoding = [0usize; 4];
        for _ in 0..1500 {
            let pts = random_series(&mut rng);
            let c = round_trip(&pts);
            by_encoding[usize::from(c[0])] += 1;
        }
        println!("chunks by encoding (xor, packed, rice): {:?}", &by_encoding[1..]);
        assert!(by_encoding[1..].iter().all(|&n| n > 0), "{by_encoding:?}");
    }

    /// Encodes each series in chunks of `chunk` points and prints bytes/point, with the
    /// timestamp share and what each decimal delta code alone would take for the values.
    fn report(name: &str, series: &[Vec<(i64, f64)>], chunk: usize) -> f64 {
        let (mut bytes, mut points, mut ts_bytes, mut by) = (0, 0, 0, [0; 3]);
        let (mut packed, mut rice, mut decimal_points) = (0, 0, 0);
        for s in series {
            for part in s.chunks(chunk) {
                let c = round_trip(part);
                bytes += c.len();
                points += part.len();
                ts_bytes += u32::from_le_bytes([c[19], c[20], c[21], c[22]]) as usize;
                by[usize::from(c[0]) - 1] += 1;
                if let Some((_, ks)) = find_decimals(part) {
                    let deltas: Vec<i64> = ks.windows(2).map(|w| w[1] - w[0]).collect();
                    let plans = plan_deltas(&deltas);
                    packed += plans[0].2.div_ceil(8);
                    rice += plans[1].2.div_ceil(8);
                    decimal_points += part.len();
                }
            }
        }
        let per = bytes as f64 / points as f64;
        println!(
            "{name}: {points} points, {bytes} bytes, {per:.3} bytes/point (timestamps {:.3}); \
             chunks xor/packed/rice {}/{}/{}",
            ts_bytes as f64 / points as f64,
            by[0],
            by[1],
            by[2]
        );
        if decimal_points > 0 {
            println!(
                "  decimal value streams alone: packed {:.3}, rice {:.3} bytes/point",
                packed as f64 / decimal_points as f64,
                rice as f64 / decimal_points as f64
            );
        }
        per
    }

    /// TSBS cpu-only: per host 10 fields, each a random walk with N(0, 1) steps clamped to
    /// 0..=100 and written as integers (TSBS `CWD` + `ToPointAllInt64`), every 10 s.
    fn tsbs_cpu(hosts: usize, points: usize) -> Vec<Vec<(i64, f64)>> {
        let mut rng = Rng(1);
        let start = 1_451_606_400_000i64; // TSBS' default start, 2016-01-01
        let mut series = Vec::new();
        for _ in 0..hosts {
            for _ in 0..10 {
                let mut state = rng.unit() * 100.0;
                series.push(
                    (0..points)
                        .map(|i| {
                            state = (state + rng.normal()).clamp(0.0, 100.0);
                            (start + i as i64 * 10_000, state.trunc())
                        })
                        .collect(),
                );
            }
        }
        series
    }

    /// Sensors: temperature (2 decimals), humidity (1 decimal), pressure (1 decimal, ~1013.2),
    /// at 1 s or 10 s with a few ms of jitter on some samples.
    fn sensors(devices: usize, points: usize) -> Vec<Vec<(i64, f64)>> {
        let mut rng = Rng(2);
        let mut series = Vec::new();
        for dev in 0..devices {
            let interval = if dev % 2 == 0 { 1000 } else { 10_000 };
            let start = 1_700_000_000_000i64 + rng.range(0, 999);
            let ts: Vec<i64> = (0..points as i64)
                .map(|i| start + i * interval + if rng.below(4) == 0 { rng.range(-4, 4) } else { 0 })
                .collect();
            let mut temp = rng.range(1500, 2500);
            let mut hum = rng.range(300, 700);
            let mut pres = rng.range(10_080, 10_180);
            let walk = |rng: &mut Rng, k: &mut i64, step: i64, lo: i64, hi: i64, div: f64| {
                *k = (*k + rng.range(-step, step)).clamp(lo, hi);
                *k as f64 / div
            };
            series.push(
                ts.iter()
                    .map(|&t| (t, walk(&mut rng, &mut temp, 4, -4000, 6000, 100.0)))
                    .collect(),
            );
            series.push(
                ts.iter()
                    .map(|&t| (t, walk(&mut rng, &mut hum, 2, 0, 1000, 10.0)))
                    .collect(),
            );
            series.push(
                ts.iter()
                    .map(|&t| (t, walk(&mut rng, &mut pres, 1, 9500, 10_500, 10.0)))
                    .collect(),
            );
        }
        series
    }

    /// Full-precision random walk (InfluxDB's float benchmark): v += N(0, 1), every 10 s.
    fn float_walk(n_series: usize, points: usize) -> Vec<Vec<(i64, f64)>> {
        let mut rng = Rng(3);
        (0..n_series)
            .map(|_| {
                let mut v = rng.normal() * 100.0;
                (0..points as i64)
                    .map(|i| {
                        v += rng.normal();
                        (1_700_000_000_000 + i * 10_000, v)
                    })
                    .collect()
            })
            .collect()
    }

    #[test]
    fn compression_figures() {
        let tsbs = report("tsbs cpu-only", &tsbs_cpu(10, 4096), 1024);
        assert!(tsbs <= 1.0, "TSBS cpu-only {tsbs:.3} bytes/point");
        let sensor = report("sensors", &sensors(20, 4096), 1024);
        assert!(sensor <= 2.5, "sensors {sensor:.3} bytes/point");
        let walk = report("float random walk", &float_walk(20, 4096), 1024);
        assert!(walk <= 8.5, "float random walk {walk:.3} bytes/point");
    }
}
