//! Decoding a request's body into entries: straight into the target type,
//! entry by entry (no intermediate `serde_json::Value`), within a count
//! and a memory budget ([`meter`](super::meter)).

use std::cell::Cell;
use std::fmt;
use std::marker::PhantomData;

use serde::de::{DeserializeOwned, DeserializeSeed, Deserializer as _, SeqAccess, Visitor};

use super::meter::{Meter, Metered, OVER_BUDGET};
use crate::net::answer::quoted_display;

/// Why a body was refused.
#[derive(Debug)]
pub(crate) enum Refusal {
    /// Malformed, or not of the entries' type (400).
    Invalid(String),
    /// More entries than `max_entries` (413).
    TooMany(usize),
    /// Entries that would take more than the budget once decoded (413).
    TooLarge(usize),
}

/// The message [`Entries`] fails with when an array is too long.
const TOO_MANY: &str = "paipa: too many entries";

/// Decodes a body: NDJSON if `ndjson` (one entry per line, blank lines
/// skipped), else one JSON value, or an array of them (the entries). At
/// most `max_entries` entries, taking at most `budget` bytes once decoded
/// (each entry pays twice its own size, for the vector that holds it, and
/// what [`Meter`] charges). A syntax error is reported as one, even where
/// the entry's type would refuse the value first.
pub(crate) fn decode<T: DeserializeOwned>(
    ndjson: bool,
    body: &[u8],
    max_entries: usize,
    budget: usize,
) -> Result<Vec<T>, Refusal> {
    let meter = Meter::new(budget);
    let slot = 2 * std::mem::size_of::<T>();
    if ndjson {
        let mut entries = Vec::new();
        for (i, line) in body.split(|b| *b == b'\n').enumerate() {
            if line.iter().all(u8::is_ascii_whitespace) {
                continue;
            }
            if entries.len() == max_entries {
                return Err(Refusal::TooMany(max_entries));
            }
            let mut de = serde_json::Deserializer::from_slice(line);
            let entry = meter
                .charge(slot)
                .and_then(|()| {
                    T::deserialize(Metered {
                        de: &mut de,
                        meter: &meter,
                    })
                })
                .and_then(|entry| de.end().map(|()| entry))
                .map_err(|e| refusal(e, line, &format!("line {}", i + 1), budget))?;
            entries.push(entry);
        }
        return Ok(entries);
    }
    let mut de = serde_json::Deserializer::from_slice(body);
    if body.iter().find(|b| !b.is_ascii_whitespace()) == Some(&b'[') {
        let at = Cell::new(0);
        let entries = Entries::<T> {
            max: max_entries,
            meter: &meter,
            slot,
            at: &at,
            entry: PhantomData,
        };
        return match de
            .deserialize_seq(entries)
            .and_then(|entries| de.end().map(|()| entries))
        {
            Ok(entries) => Ok(entries),
            Err(e) if quoted_display(&e).starts_with(TOO_MANY) => Err(Refusal::TooMany(max_entries)),
            Err(e) => Err(refusal(e, body, &format!("entry {}", at.get()), budget)),
        };
    }
    meter
        .charge(slot)
        .and_then(|()| {
            T::deserialize(Metered {
                de: &mut de,
                meter: &meter,
            })
        })
        .and_then(|entry| de.end().map(|()| vec![entry]))
        .map_err(|e| refusal(e, body, "entry", budget))
}

/// What a failed decoding of `text` (the whole body, or one line) says:
/// a syntax error anywhere in `text` first, then the entry's own error.
fn refusal(e: serde_json::Error, text: &[u8], entry: &str, budget: usize) -> Refusal {
    // An error may quote the value it refuses, whole: it is cut here, never
    // copied whole.
    let why = quoted_display(&e);
    if why.starts_with(OVER_BUDGET) {
        return Refusal::TooLarge(budget);
    }
    let line = if entry.starts_with("line") {
        format!("{entry}: ")
    } else {
        String::new()
    };
    if e.is_syntax() || e.is_eof() {
        return Refusal::Invalid(format!("{line}invalid JSON: {why}"));
    }
    // A type mismatch: is the text valid JSON at all? (Reading it as
    // `IgnoredAny` builds nothing.)
    if let Err(syntax) = serde_json::from_slice::<serde::de::IgnoredAny>(text) {
        return Refusal::Invalid(format!("{line}invalid JSON: {}", quoted_display(&syntax)));
    }
    Refusal::Invalid(format!("{entry}: {why}"))
}

/// Reads a JSON array of at most `max` entries of type `T`, failing at the
/// first one past that.
struct Entries<'m, T> {
    max: usize,
    meter: &'m Meter,
    slot: usize,
    /// The index of the entry being read (for errors).
    at: &'m Cell<usize>,
    entry: PhantomData<T>,
}

/// One entry, decoded through the meter.
struct Entry<'m, T>(&'m Meter, PhantomData<T>);

impl<'de, T: DeserializeOwned> DeserializeSeed<'de> for Entry<'_, T> {
    type Value = T;

    fn deserialize<D: serde::Deserializer<'de>>(self, de: D) -> Result<T, D::Error> {
        T::deserialize(Metered { de, meter: self.0 })
    }
}

impl<'de, T: DeserializeOwned> Visitor<'de> for Entries<'_, T> {
    type Value = Vec<T>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a JSON array of entries")
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Vec<T>, A::Error> {
        let mut entries = Vec::new();
        loop {
            self.at.set(entries.len());
            self.meter.charge(self.slot)?;
            let Some(entry) = seq.next_element_seed(Entry(self.meter, PhantomData))? else {
                return Ok(entries);
            };
            if entries.len() == self.max {
                return Err(serde::de::Error::custom(TOO_MANY));
            }
            entries.push(entry);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn invalid<T: DeserializeOwned + fmt::Debug>(ndjson: bool, body: &str) -> String {
        match decode::<T>(ndjson, body.as_bytes(), 10, 1 << 20) {
            Err(Refusal::Invalid(why)) => why,
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn entries_are_decoded_straight_into_their_type() {
        let ids: Vec<u64> = decode(false, b" [1, 2, 3] ", 10, 1 << 20).unwrap();
        assert_eq!(ids, [1, 2, 3]);
        let one: Vec<u64> = decode(false, b"7", 10, 1 << 20).unwrap();
        assert_eq!(one, [7]);
        let lines: Vec<String> = decode(true, b"\"a\"\r\n\n  \n\"b\"\n", 10, 1 << 20).unwrap();
        assert_eq!(lines, ["a", "b"]);
    }

    #[test]
    fn refusals_say_where_and_why() {
        assert_eq!(
            invalid::<u64>(false, "[1, \"x\"]"),
            "entry 1: invalid type: string \"x\", expected u64 at line 1 column 7"
        );
        assert_eq!(
            invalid::<u64>(false, "[1, {]"),
            "invalid JSON: key must be a string at line 1 column 6"
        );
        // A type mismatch before a syntax error: the syntax error is named.
        assert_eq!(
            invalid::<u64>(false, "[{\"a\": 1], 2"),
            "invalid JSON: expected `,` or `}` at line 1 column 9"
        );
        assert_eq!(
            invalid::<u64>(true, "1\n{\"a\":"),
            "line 2: invalid JSON: EOF while parsing a value at line 1 column 5"
        );
        assert!(matches!(
            decode::<u64>(false, b"[1,2,3]", 2, 1 << 20),
            Err(Refusal::TooMany(2))
        ));
        let zeros = format!("[[{}]]", vec!["0"; 10_000].join(","));
        assert!(matches!(
            decode::<serde_json::Value>(false, zeros.as_bytes(), 10, 100_000),
            Err(Refusal::TooLarge(100_000))
        ));
    }
}
