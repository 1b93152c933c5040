//! The log decoders on arbitrary bytes: segment header, trailer, footer, and a walk over an
//! entry area as recovery does it. Never panics; a decoded entry lies inside the input and
//! re-encodes to the same bytes.
#![no_main]

use flo::log::format::{decode_entry, encode_entry, Decoded, Footer, SegmentHeader, Trailer};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = SegmentHeader::decode(data);
    let _ = Trailer::decode(data);
    let _ = Footer::decode(data);
    let mut pos = 0;
    while pos + 4 <= data.len() {
        match decode_entry(&data[pos..]) {
            Ok(Decoded::Entry(e)) => {
                let mut again = Vec::new();
                encode_entry(&mut again, e.lsn, e.entry_type, e.flags, e.body);
                let n = 24 + e.body.len();
                assert_eq!(&again[..n], &data[pos..pos + n]);
                pos += e.stored_bytes();
            }
            Ok(Decoded::End) => break,
            Err(_) => pos += 8,
        }
    }
});
