//! JSON with every object's keys unique. `serde_json` keeps the last of two
//! equal keys; another parser may keep the first, so a manifest with a
//! duplicate key could be read as two different manifests under one digest.
//! Manifests are parsed with [`unique_keys`] and refused when a key repeats.

use serde::de::{self, Deserialize, Deserializer, MapAccess, SeqAccess, Visitor};
use serde_json::{Map, Number, Value};
use std::fmt;

/// A JSON value whose objects had no repeated key.
struct Unique(Value);

impl<'de> Deserialize<'de> for Unique {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Unique, D::Error> {
        d.deserialize_any(UniqueVisitor).map(Unique)
    }
}

struct UniqueVisitor;

impl<'de> Visitor<'de> for UniqueVisitor {
    type Value = Value;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a JSON value")
    }
    fn visit_bool<E>(self, v: bool) -> Result<Value, E> {
        Ok(Value::Bool(v))
    }
    fn visit_i64<E>(self, v: i64) -> Result<Value, E> {
        Ok(Value::Number(v.into()))
    }
    fn visit_u64<E>(self, v: u64) -> Result<Value, E> {
        Ok(Value::Number(v.into()))
    }
    fn visit_f64<E: de::Error>(self, v: f64) -> Result<Value, E> {
        Number::from_f64(v)
            .map(Value::Number)
            .ok_or_else(|| E::custom("a number JSON cannot hold"))
    }
    fn visit_str<E>(self, v: &str) -> Result<Value, E> {
        Ok(Value::String(v.to_string()))
    }
    fn visit_string<E>(self, v: String) -> Result<Value, E> {
        Ok(Value::String(v))
    }
    fn visit_unit<E>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }
    fn visit_none<E>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }
    fn visit_some<D: Deserializer<'de>>(self, d: D) -> Result<Value, D::Error> {
        Unique::deserialize(d).map(|u| u.0)
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Value, A::Error> {
        let mut out = Vec::new();
        while let Some(Unique(v)) = seq.next_element()? {
            out.push(v);
        }
        Ok(Value::Array(out))
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Value, A::Error> {
        let mut out = Map::new();
        while let Some(k) = map.next_key::<String>()? {
            let Unique(v) = map.next_value()?;
            if out.contains_key(&k) {
                return Err(de::Error::custom(format_args!("duplicate key {k:?}")));
            }
            out.insert(k, v);
        }
        Ok(Value::Object(out))
    }
}

/// Parse `body` as JSON, refusing any object in which a key repeats.
pub fn unique_keys(body: &[u8]) -> Result<Value, serde_json::Error> {
    serde_json::from_slice::<Unique>(body).map(|u| u.0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn same_value_as_serde_json_when_keys_are_unique() {
        let doc =
            br#"{"a":[1,-2,3.5,"x",null,true,{"b":{}}],"c":{"d":[]},"e":18446744073709551615}"#;
        let strict = unique_keys(doc).unwrap();
        let plain: Value = serde_json::from_slice(doc).unwrap();
        assert_eq!(strict, plain);
    }

    #[test]
    fn a_repeated_key_at_any_depth_is_refused() {
        for doc in [
            r#"{"a":1,"a":1}"#,
            r#"{"a":1,"b":2,"a":3}"#,
            r#"{"x":{"mediaType":"a","mediaType":"b"}}"#,
            r#"{"layers":[{"digest":"sha256:1"},{"size":1,"size":2}]}"#,
        ] {
            let e = unique_keys(doc.as_bytes()).unwrap_err();
            assert!(e.to_string().contains("duplicate key"), "{doc}: {e}");
        }
        // the same key in sibling objects is fine
        assert!(unique_keys(br#"[{"a":1},{"a":2}]"#).is_ok());
    }

    #[test]
    fn still_refuses_what_json_refuses() {
        for doc in ["", "{", "{\"a\":}", "[1,]", "nul", "{\"a\":1}x"] {
            assert!(unique_keys(doc.as_bytes()).is_err(), "{doc:?}");
        }
        let deep = "[".repeat(1000) + &"]".repeat(1000);
        assert!(
            unique_keys(deep.as_bytes()).is_err(),
            "recursion limit kept"
        );
    }
}
