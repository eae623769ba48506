//! How a value travels in a stream entry's `data` field: serde JSON by
//! default (readable with `redis-cli`), or postcard, a compact binary
//! format, when both ends opt in.

use serde::{de::DeserializeOwned, Serialize};

/// The serialization of entries on one stream. Both ends of an edge must
/// use the same one: an entry that does not decode goes to the dead-letter
/// stream with the decoder's error.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub enum Codec {
    /// serde JSON: text, self-describing, readable with `redis-cli`.
    #[default]
    Json,
    /// postcard: compact binary (varints, no field names); smaller entries
    /// and cheaper to encode, unreadable by other tools.
    Binary,
}

impl Codec {
    /// Serializes `value` into `out` (cleared first).
    pub fn encode<T: Serialize>(self, value: &T, out: &mut Vec<u8>) -> Result<(), String> {
        out.clear();
        match self {
            Codec::Json => serde_json::to_writer(&mut *out, value).map_err(|e| e.to_string()),
            Codec::Binary => {
                *out = postcard::to_extend(value, std::mem::take(out)).map_err(|e| e.to_string())?;
                Ok(())
            }
        }
    }

    /// Deserializes one value.
    pub fn decode<T: DeserializeOwned>(self, bytes: &[u8]) -> Result<T, String> {
        match self {
            Codec::Json => serde_json::from_slice(bytes).map_err(|e| e.to_string()),
            Codec::Binary => postcard::from_bytes(bytes).map_err(|e| e.to_string()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::Codec;

    #[test]
    fn both_codecs_round_trip_and_binary_is_smaller() {
        let value = (42u64, "forty-two".to_string(), vec![1i32, -2, 3]);
        let mut json = Vec::new();
        let mut bin = Vec::new();
        Codec::Json.encode(&value, &mut json).unwrap();
        Codec::Binary.encode(&value, &mut bin).unwrap();
        assert_eq!(Codec::Json.decode::<(u64, String, Vec<i32>)>(&json).unwrap(), value);
        assert_eq!(Codec::Binary.decode::<(u64, String, Vec<i32>)>(&bin).unwrap(), value);
        assert!(bin.len() < json.len());
    }

    #[test]
    fn a_bad_entry_is_an_error_not_a_panic() {
        assert!(Codec::Json.decode::<u64>(b"not json").is_err());
        assert!(Codec::Binary.decode::<String>(&[0xff]).is_err());
    }
}
