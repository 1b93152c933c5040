//! The line-protocol parser on arbitrary bytes, in both modes: never panics; the atomic and the
//! partial parse agree (same points up to the first bad line, which both name); every point
//! written back with `write_point` parses to the same point (floats compared by bits); a parser
//! that has seen the body before (its cache of tag sections filled) gives the same answer again.

use crate::ts::line::{
    parse, parse_partial, write_point, LineError, OwnedPoint, OwnedValue, ParseError, Parser, Point, Precision,
};

type Owned = OwnedPoint;

fn own(p: &Point<'_>) -> Owned {
    p.to_owned_point()
}

/// The invariants of every point the parser gives.
fn check_point(p: &Owned) {
    assert!(!p.measurement.is_empty() && !p.measurement.starts_with('_'));
    assert!(!p.fields.is_empty());
    for w in p.tags.windows(2) {
        assert!(w[0].0 < w[1].0, "tags sorted, keys distinct");
    }
    for w in p.fields.windows(2) {
        assert!(w[0].0 < w[1].0, "fields sorted, keys distinct");
    }
    for (k, v) in &p.tags {
        assert!(!k.is_empty() && !v.is_empty() && !k.starts_with('_') && k != "time");
    }
    for (k, v) in &p.fields {
        assert!(!k.is_empty() && !k.starts_with('_') && k != "time");
        if let OwnedValue::Float(bits) = v {
            assert!(f64::from_bits(*bits).is_finite(), "no NaN or infinity is a field value");
        }
        assert!(p.tags.iter().all(|(t, _)| t != k));
    }
}

/// Checks one input; panics on a violation.
pub fn check(data: &[u8]) {
    // The first byte picks the precision and the server's time, the rest is the body.
    let Some((&pick, body)) = data.split_first() else {
        return;
    };
    let precision = [Precision::Ns, Precision::Us, Precision::Ms, Precision::S][usize::from(pick & 3)];
    let now = i64::from(pick >> 2) * 1_000_000_007;

    let mut atomic = Vec::new();
    let atomic_result = parse(body, precision, now, |p| {
        atomic.push(own(p));
        Ok::<(), ()>(())
    });

    let mut points = Vec::new();
    let mut bad: Vec<LineError> = Vec::new();
    let stats = parse_partial(
        body,
        precision,
        now,
        |p| {
            let o = own(p);
            check_point(&o);
            let mut line = Vec::new();
            write_point(&mut line, p).expect("a parsed point can be written");
            let mut again = Vec::new();
            let r = parse(&line, Precision::Ns, now.wrapping_add(1), |q| {
                again.push(own(q));
                Ok::<(), ()>(())
            });
            assert!(r.is_ok(), "{:?} wrote {:?}: {r:?}", o, String::from_utf8_lossy(&line));
            assert_eq!(again.len(), 1);
            let q = &again[0];
            assert_eq!(
                (&q.measurement, &q.tags, &q.fields, q.ts),
                (&o.measurement, &o.tags, &o.fields, o.ts),
                "{:?}",
                String::from_utf8_lossy(&line)
            );
            points.push(o);
            Ok::<(), ()>(())
        },
        |e| {
            assert!(e.line >= 1 && !e.reason.is_empty());
            bad.push(e)
        },
    )
    .expect("the callback never fails");
    assert_eq!(stats.points, points.len());
    assert_eq!(stats.lines_rejected, bad.len());
    assert!(bad.windows(2).all(|w| w[0].line < w[1].line));
    assert!(points.windows(2).all(|w| w[0].line < w[1].line));

    // The atomic parse gives the same points up to the first bad line, and stops there.
    match atomic_result {
        Ok(s) => {
            assert!(bad.is_empty());
            assert_eq!(s, stats);
            assert_eq!(atomic, points);
        }
        Err(ParseError::Line(e)) => {
            assert_eq!(Some(&e), bad.first());
            let before = points.iter().take_while(|p| p.line < e.line).count();
            assert_eq!(atomic, points[..before]);
        }
        Err(ParseError::Stopped(())) => unreachable!(),
    }

    // One parser twice over the body: the second pass meets its tag sections in the cache.
    let mut reused = Parser::new();
    for pass in 0..2 {
        let mut again = Vec::new();
        let mut again_bad = Vec::new();
        let s = reused
            .parse_partial(
                body,
                precision,
                now,
                |p| {
                    again.push(own(p));
                    Ok::<(), ()>(())
                },
                |e| again_bad.push(e),
            )
            .expect("the callback never fails");
        assert_eq!((s, &again, &again_bad), (stats, &points, &bad), "pass {pass}");
    }
}
