//! Model-based test of KV through the real binary: random puts (plain, CAS right and wrong,
//! if_not_exists), deletes (plain and CAS), gets and prefix scans, compared answer by answer
//! with a `BTreeMap` model, with SIGTERM and SIGKILL restarts in between (every acknowledged
//! write must be there after either). Seeded; `FLO_MODEL_OPS` scales it.

mod common;

use std::collections::BTreeMap;

use base64::Engine as _;
use common::{Rng, Server};

const B64: base64::engine::GeneralPurpose = base64::engine::general_purpose::STANDARD;

/// key → (version of the latest entry, value; None for a tombstone).
type Model = BTreeMap<String, (u64, Option<Vec<u8>>)>;

fn visible(model: &Model, key: &str) -> Option<(u64, Vec<u8>)> {
    model.get(key).and_then(|(v, val)| val.clone().map(|b| (*v, b)))
}

fn next_version(model: &Model, key: &str) -> u64 {
    model.get(key).map_or(0, |(v, _)| *v) + 1
}

#[test]
fn kv_matches_a_model_across_restarts() {
    let ops = common::env_u64("FLO_MODEL_OPS", 2000);
    let mut s = Server::builder().shards(2).start();
    let mut rng = Rng(0x5eed_1234_abcd_9876);
    let mut model = Model::new();
    let keys: Vec<String> = (0..24).map(|i| format!("{}:{i}", ["a", "b", "c"][i % 3])).collect();
    for op in 0..ops {
        let key = keys[rng.below(keys.len() as u64) as usize].clone();
        let path = format!("/api/v1/kv/model/{key}");
        let what = format!("op {op} on {key}");
        match rng.below(10) {
            0..=3 => {
                // Put, with a condition a third of the time.
                let value: Vec<u8> = (0..rng.below(40)).map(|_| rng.next() as u8).collect();
                let current = visible(&model, &key).map_or(0, |(v, _)| v);
                let (cond, ok) = match rng.below(6) {
                    0 => (format!(r#","cas_version":{current}"#), true),
                    1 => (format!(r#","cas_version":{}"#, current + 1 + rng.below(3)), false),
                    2 => (r#","if_not_exists":true"#.to_string(), current == 0),
                    _ => (String::new(), true),
                };
                let body = format!(r#"{{"value":"{}"{cond}}}"#, B64.encode(&value));
                let r = s.put_json(&path, &body);
                if ok {
                    assert_eq!(r.status, 200, "{what}: {}", r.text());
                    let v = next_version(&model, &key);
                    assert_eq!(r.json()["version"], v, "{what}");
                    model.insert(key, (v, Some(value)));
                } else {
                    assert_eq!(r.status, 409, "{what}: {}", r.text());
                    assert_eq!(r.json()["current_version"], current, "{what}");
                }
            }
            4 | 5 => {
                let current = visible(&model, &key).map_or(0, |(v, _)| v);
                let cas = rng.below(3) == 0;
                let wrong = cas && rng.below(2) == 0;
                let url = match (cas, wrong) {
                    (true, false) => format!("{path}?cas_version={current}"),
                    (true, true) => format!("{path}?cas_version={}", current + 1),
                    _ => path.clone(),
                };
                let r = s.delete(&url);
                if wrong {
                    assert_eq!(r.status, 409, "{what}: {}", r.text());
                } else if current == 0 {
                    assert!(r.status == 404 || r.status == 409, "{what}: {}", r.text());
                } else {
                    assert_eq!(r.status, 200, "{what}: {}", r.text());
                    let v = next_version(&model, &key);
                    assert_eq!(r.json()["version"], v, "{what}");
                    model.insert(key, (v, None));
                }
            }
            6..=8 => {
                let r = s.get(&path);
                match visible(&model, &key) {
                    None => assert_eq!(r.status, 404, "{what}: {}", r.text()),
                    Some((v, val)) => {
                        assert_eq!(r.status, 200, "{what}");
                        let j = r.json();
                        assert_eq!(j["version"], v, "{what}");
                        assert_eq!(B64.decode(j["value"].as_str().unwrap()).unwrap(), val, "{what}");
                    }
                }
            }
            _ => {
                let prefix = ["a:", "b:", "c:", ""][rng.below(4) as usize];
                let r = s
                    .get(&format!("/api/v1/kv/model?prefix={prefix}&values=true&limit=1000"))
                    .json();
                let got: Vec<(String, u64, Vec<u8>)> = r["keys"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .map(|k| {
                        let val = B64.decode(k["value"].as_str().unwrap()).unwrap();
                        (
                            k["key"].as_str().unwrap().to_string(),
                            k["version"].as_u64().unwrap(),
                            val,
                        )
                    })
                    .collect();
                let want: Vec<(String, u64, Vec<u8>)> = model
                    .iter()
                    .filter(|(k, _)| k.starts_with(prefix))
                    .filter_map(|(k, (v, val))| val.clone().map(|b| (k.clone(), *v, b)))
                    .collect();
                assert_eq!(got, want, "op {op}: scan {prefix:?}");
            }
        }
        if op % 150 == 149 {
            if rng.below(2) == 0 {
                s.sigkill();
            } else {
                assert!(s.sigterm().success());
            }
            s.restart();
        }
    }
}
