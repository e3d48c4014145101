//! YAML decoding with a bound on what aliases may expand to.
//!
//! serde_yaml expands every alias (`*a`) into a full copy of its anchored node, so a 64 KiB
//! document of one 1,000-scalar anchor and 20,000 aliases became 20 million JSON values
//! (25 s of CPU and 1.9 GiB on the API server, measured). Without aliases a document cannot
//! hold more nodes than it has bytes, so the decoder here counts every node it builds, and
//! every byte of every string, against a budget of a small multiple of the text's size, and
//! stops at the first unit past it. This is the "excessive aliasing" guard of the YAML
//! library under Kubernetes, applied per byte of input instead of a fixed count.

use std::cell::Cell;
use std::fmt;

use serde::de::{self, DeserializeSeed, MapAccess, SeqAccess, Visitor};
use serde_json::{Map, Number, Value};

/// How many units (a node, or a byte of a string or key) each byte of text may expand to.
/// A document without aliases uses at most ~1 per byte; this leaves room for aliases of
/// small anchors, which people use in real manifests.
pub const EXPANSION_PER_BYTE: usize = 4;
/// Units every text may use whatever its size (a few small documents).
pub const EXPANSION_FLOOR: usize = 4096;

/// The budget shared by every document of one text.
pub struct Budget {
    left: Cell<usize>,
    limit: usize,
}

impl Budget {
    pub fn for_text(text: &str) -> Self {
        let limit = text
            .len()
            .saturating_mul(EXPANSION_PER_BYTE)
            .saturating_add(EXPANSION_FLOOR);
        Self {
            left: Cell::new(limit),
            limit,
        }
    }

    fn take<E: de::Error>(&self, units: usize) -> Result<(), E> {
        match self.left.get().checked_sub(units.max(1)) {
            Some(left) => {
                self.left.set(left);
                Ok(())
            }
            None => Err(E::custom(format_args!(
                "the document expands to more than {} values and bytes ({EXPANSION_PER_BYTE} per byte \
                 of input): YAML aliases (*name) may only repeat small anchors",
                self.limit
            ))),
        }
    }
}

/// One document: `None` for an empty or `null` one, else a mapping (anything else is the
/// parser's "invalid type" error, with its position).
pub struct Document<'b>(pub &'b Budget);

impl<'de> DeserializeSeed<'de> for Document<'_> {
    type Value = Option<Map<String, Value>>;

    fn deserialize<D: de::Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
        d.deserialize_option(self)
    }
}

impl<'de> Visitor<'de> for Document<'_> {
    type Value = Option<Map<String, Value>>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a map")
    }

    fn visit_none<E: de::Error>(self) -> Result<Self::Value, E> {
        Ok(None)
    }

    fn visit_unit<E: de::Error>(self) -> Result<Self::Value, E> {
        Ok(None)
    }

    fn visit_some<D: de::Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
        match d.deserialize_map(Node(self.0))? {
            Value::Object(map) => Ok(Some(map)),
            // `Node` makes an object of every map it is given.
            _ => Err(de::Error::custom("expected a map")),
        }
    }
}

/// Any node, as a JSON value, counted against the budget.
struct Node<'b>(&'b Budget);

impl<'de> DeserializeSeed<'de> for Node<'_> {
    type Value = Value;

    fn deserialize<D: de::Deserializer<'de>>(self, d: D) -> Result<Value, D::Error> {
        d.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for Node<'_> {
    type Value = Value;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("any YAML value")
    }

    fn visit_bool<E: de::Error>(self, v: bool) -> Result<Value, E> {
        self.0.take(1)?;
        Ok(Value::Bool(v))
    }

    fn visit_i64<E: de::Error>(self, v: i64) -> Result<Value, E> {
        self.0.take(1)?;
        Ok(Value::Number(v.into()))
    }

    fn visit_u64<E: de::Error>(self, v: u64) -> Result<Value, E> {
        self.0.take(1)?;
        Ok(Value::Number(v.into()))
    }

    fn visit_f64<E: de::Error>(self, v: f64) -> Result<Value, E> {
        self.0.take(1)?;
        // As serde_json's own `Value`: a NaN or infinity has no JSON form.
        Ok(Number::from_f64(v).map_or(Value::Null, Value::Number))
    }

    fn visit_str<E: de::Error>(self, v: &str) -> Result<Value, E> {
        self.0.take(v.len())?;
        Ok(Value::String(v.to_owned()))
    }

    fn visit_string<E: de::Error>(self, v: String) -> Result<Value, E> {
        self.0.take(v.len())?;
        Ok(Value::String(v))
    }

    fn visit_unit<E: de::Error>(self) -> Result<Value, E> {
        self.0.take(1)?;
        Ok(Value::Null)
    }

    fn visit_none<E: de::Error>(self) -> Result<Value, E> {
        self.visit_unit()
    }

    fn visit_some<D: de::Deserializer<'de>>(self, d: D) -> Result<Value, D::Error> {
        d.deserialize_any(self)
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Value, A::Error> {
        self.0.take(1)?;
        let mut items = Vec::new();
        while let Some(item) = seq.next_element_seed(Node(self.0))? {
            items.push(item);
        }
        Ok(Value::Array(items))
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Value, A::Error> {
        self.0.take(1)?;
        let mut out = Map::new();
        while let Some(key) = map.next_key::<String>()? {
            self.0.take(key.len())?;
            let value = map.next_value_seed(Node(self.0))?;
            out.insert(key, value);
        }
        Ok(Value::Object(out))
    }
}

/// Deepest nesting of flow collections (`[` and `{`) a YAML text may have. The YAML parser
/// under serde_yaml checks every open flow level on every token, so its time grows with
/// depth × tokens: 100,000 nested `[` took 45 s of CPU (measured, debug build). serde_yaml
/// refuses nesting deeper than 128 anyway, once it has parsed it all.
pub const MAX_FLOW_DEPTH: usize = 256;

/// Refuses a text whose brackets nest deeper than [`MAX_FLOW_DEPTH`], before the parser
/// sees it, with the 1-based line where the limit was passed. Counts every bracket, also in
/// strings and comments: balanced text (a JSON document in a block scalar) counts as deep as
/// it nests, and only unbalanced runs of hundreds of `[` in a string are refused wrongly.
pub fn check_flow_depth(text: &str) -> Result<(), (usize, String)> {
    let mut depth = 0usize;
    let mut line = 1;
    for b in text.bytes() {
        match b {
            b'[' | b'{' => {
                depth += 1;
                if depth > MAX_FLOW_DEPTH {
                    return Err((
                        line,
                        format!("brackets ([ and {{) nest deeper than {MAX_FLOW_DEPTH} levels"),
                    ));
                }
            }
            b']' | b'}' => depth = depth.saturating_sub(1),
            b'\n' => line += 1,
            _ => {}
        }
    }
    Ok(())
}
