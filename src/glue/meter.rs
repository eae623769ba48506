//! A memory budget for decoding: a wrapper around any serde
//! `Deserializer` that charges every value it hands to its target, and
//! fails the decoding once the budget is spent. So a body of a few bytes
//! per value (`[[0,0,0,...]]`) cannot grow into hundreds of megabytes of
//! decoded values: the request is refused when its entries would take
//! more memory than the budget, before they do.
//!
//! What a value costs is estimated from the way its target asks for it:
//! - a target that takes any value (`serde_json::Value`, or serde's
//!   buffer for untagged enums) pays what a `serde_json::Value` holds: 64
//!   bytes per array element (the slot, and the slack of a growing
//!   vector), 640 per object (the first node of its map) and 100 per
//!   member;
//! - a typed target pays 16 bytes per sequence element, 64 per map entry,
//!   nothing for a struct's fields;
//! - every string and byte string pays its length.
//!
//! Top-level entries pay their own size (`size_of::<T>()`), charged by
//! the caller.

use std::cell::Cell;
use std::fmt;

use serde::de::{self, DeserializeSeed, Deserializer, EnumAccess, MapAccess, SeqAccess, VariantAccess, Visitor};

/// The message a decoding fails with when the budget is spent.
pub(crate) const OVER_BUDGET: &str = "paipa: over the decoding budget";

/// Bytes a decoding may still take.
pub(crate) struct Meter {
    left: Cell<usize>,
}

impl Meter {
    pub(crate) fn new(budget: usize) -> Self {
        Meter {
            left: Cell::new(budget),
        }
    }

    /// Takes `bytes` from the budget, or fails once it is spent.
    pub(crate) fn charge<E: de::Error>(&self, bytes: usize) -> Result<(), E> {
        match self.left.get().checked_sub(bytes) {
            Some(left) => {
                self.left.set(left);
                Ok(())
            }
            None => Err(E::custom(OVER_BUDGET)),
        }
    }
}

/// Per array element of a target that takes any value.
const ANY_ELEMENT: usize = 64;
/// Per object of such a target.
const ANY_OBJECT: usize = 640;
/// Per member of such an object.
const ANY_MEMBER: usize = 100;
/// Per element of a typed sequence.
const TYPED_ELEMENT: usize = 16;
/// Per entry of a typed map.
const TYPED_ENTRY: usize = 64;

/// How the target asked for a value.
#[derive(Clone, Copy)]
enum Asked {
    /// Any value (`deserialize_any`).
    Any,
    /// A sequence or map of its own type.
    Typed,
    /// A struct's fields: no heap of their own.
    Fields,
}

/// A deserializer that charges `meter` for what it hands out.
pub(crate) struct Metered<'m, D> {
    pub(crate) de: D,
    pub(crate) meter: &'m Meter,
}

struct Visit<'m, V> {
    visitor: V,
    meter: &'m Meter,
    asked: Asked,
}

struct Seed<'m, S> {
    seed: S,
    meter: &'m Meter,
}

struct Seq<'m, A> {
    seq: A,
    meter: &'m Meter,
    slot: usize,
}

struct Map<'m, A> {
    map: A,
    meter: &'m Meter,
    slot: usize,
}

struct Enum<'m, A> {
    data: A,
    meter: &'m Meter,
}

impl<'m, D> Metered<'m, D> {
    fn visit<V>(&self, visitor: V, asked: Asked) -> Visit<'m, V> {
        Visit {
            visitor,
            meter: self.meter,
            asked,
        }
    }
}

macro_rules! forward_typed {
    ($($method:ident)*) => {$(
        fn $method<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, D::Error> {
            let visit = self.visit(visitor, Asked::Typed);
            self.de.$method(visit)
        }
    )*};
}

impl<'de, D: Deserializer<'de>> Deserializer<'de> for Metered<'_, D> {
    type Error = D::Error;

    fn deserialize_any<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, D::Error> {
        let visit = self.visit(visitor, Asked::Any);
        self.de.deserialize_any(visit)
    }

    forward_typed! {
        deserialize_bool deserialize_i8 deserialize_i16 deserialize_i32 deserialize_i64 deserialize_i128
        deserialize_u8 deserialize_u16 deserialize_u32 deserialize_u64 deserialize_u128
        deserialize_f32 deserialize_f64 deserialize_char deserialize_str deserialize_string
        deserialize_bytes deserialize_byte_buf deserialize_option deserialize_unit
        deserialize_seq deserialize_map deserialize_identifier deserialize_ignored_any
    }

    fn deserialize_unit_struct<V: Visitor<'de>>(self, name: &'static str, visitor: V) -> Result<V::Value, D::Error> {
        let visit = self.visit(visitor, Asked::Typed);
        self.de.deserialize_unit_struct(name, visit)
    }

    fn deserialize_newtype_struct<V: Visitor<'de>>(self, name: &'static str, visitor: V) -> Result<V::Value, D::Error> {
        let visit = self.visit(visitor, Asked::Typed);
        self.de.deserialize_newtype_struct(name, visit)
    }

    fn deserialize_tuple<V: Visitor<'de>>(self, len: usize, visitor: V) -> Result<V::Value, D::Error> {
        let visit = self.visit(visitor, Asked::Fields);
        self.de.deserialize_tuple(len, visit)
    }

    fn deserialize_tuple_struct<V: Visitor<'de>>(
        self,
        name: &'static str,
        len: usize,
        visitor: V,
    ) -> Result<V::Value, D::Error> {
        let visit = self.visit(visitor, Asked::Fields);
        self.de.deserialize_tuple_struct(name, len, visit)
    }

    fn deserialize_struct<V: Visitor<'de>>(
        self,
        name: &'static str,
        fields: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value, D::Error> {
        let visit = self.visit(visitor, Asked::Fields);
        self.de.deserialize_struct(name, fields, visit)
    }

    fn deserialize_enum<V: Visitor<'de>>(
        self,
        name: &'static str,
        variants: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value, D::Error> {
        let visit = self.visit(visitor, Asked::Typed);
        self.de.deserialize_enum(name, variants, visit)
    }

    fn is_human_readable(&self) -> bool {
        self.de.is_human_readable()
    }
}

macro_rules! forward_scalar {
    ($($method:ident: $ty:ty)*) => {$(
        fn $method<E: de::Error>(self, v: $ty) -> Result<V::Value, E> {
            self.visitor.$method(v)
        }
    )*};
}

impl<'de, V: Visitor<'de>> Visitor<'de> for Visit<'_, V> {
    type Value = V::Value;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.visitor.expecting(f)
    }

    forward_scalar! {
        visit_bool: bool visit_i8: i8 visit_i16: i16 visit_i32: i32 visit_i64: i64 visit_i128: i128
        visit_u8: u8 visit_u16: u16 visit_u32: u32 visit_u64: u64 visit_u128: u128
        visit_f32: f32 visit_f64: f64 visit_char: char
    }

    fn visit_str<E: de::Error>(self, v: &str) -> Result<V::Value, E> {
        self.meter.charge(v.len())?;
        self.visitor.visit_str(v)
    }

    fn visit_borrowed_str<E: de::Error>(self, v: &'de str) -> Result<V::Value, E> {
        self.meter.charge(v.len())?;
        self.visitor.visit_borrowed_str(v)
    }

    fn visit_string<E: de::Error>(self, v: String) -> Result<V::Value, E> {
        self.meter.charge(v.len())?;
        self.visitor.visit_string(v)
    }

    fn visit_bytes<E: de::Error>(self, v: &[u8]) -> Result<V::Value, E> {
        self.meter.charge(v.len())?;
        self.visitor.visit_bytes(v)
    }

    fn visit_borrowed_bytes<E: de::Error>(self, v: &'de [u8]) -> Result<V::Value, E> {
        self.meter.charge(v.len())?;
        self.visitor.visit_borrowed_bytes(v)
    }

    fn visit_byte_buf<E: de::Error>(self, v: Vec<u8>) -> Result<V::Value, E> {
        self.meter.charge(v.len())?;
        self.visitor.visit_byte_buf(v)
    }

    fn visit_none<E: de::Error>(self) -> Result<V::Value, E> {
        self.visitor.visit_none()
    }

    fn visit_some<D: Deserializer<'de>>(self, de: D) -> Result<V::Value, D::Error> {
        self.visitor.visit_some(Metered { de, meter: self.meter })
    }

    fn visit_unit<E: de::Error>(self) -> Result<V::Value, E> {
        self.visitor.visit_unit()
    }

    fn visit_newtype_struct<D: Deserializer<'de>>(self, de: D) -> Result<V::Value, D::Error> {
        self.visitor.visit_newtype_struct(Metered { de, meter: self.meter })
    }

    fn visit_seq<A: SeqAccess<'de>>(self, seq: A) -> Result<V::Value, A::Error> {
        let slot = match self.asked {
            Asked::Any => ANY_ELEMENT,
            Asked::Typed => TYPED_ELEMENT,
            Asked::Fields => 0,
        };
        self.visitor.visit_seq(Seq {
            seq,
            meter: self.meter,
            slot,
        })
    }

    fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<V::Value, A::Error> {
        let slot = match self.asked {
            Asked::Any => {
                self.meter.charge(ANY_OBJECT)?;
                ANY_MEMBER
            }
            Asked::Typed => TYPED_ENTRY,
            Asked::Fields => 0,
        };
        self.visitor.visit_map(Map {
            map,
            meter: self.meter,
            slot,
        })
    }

    fn visit_enum<A: EnumAccess<'de>>(self, data: A) -> Result<V::Value, A::Error> {
        self.visitor.visit_enum(Enum {
            data,
            meter: self.meter,
        })
    }
}

impl<'de, S: DeserializeSeed<'de>> DeserializeSeed<'de> for Seed<'_, S> {
    type Value = S::Value;

    fn deserialize<D: Deserializer<'de>>(self, de: D) -> Result<S::Value, D::Error> {
        self.seed.deserialize(Metered { de, meter: self.meter })
    }
}

impl<'de, A: SeqAccess<'de>> SeqAccess<'de> for Seq<'_, A> {
    type Error = A::Error;

    fn next_element_seed<T: DeserializeSeed<'de>>(&mut self, seed: T) -> Result<Option<T::Value>, A::Error> {
        let element = self.seq.next_element_seed(Seed {
            seed,
            meter: self.meter,
        })?;
        if element.is_some() {
            self.meter.charge(self.slot)?;
        }
        Ok(element)
    }

    fn size_hint(&self) -> Option<usize> {
        self.seq.size_hint()
    }
}

impl<'de, A: MapAccess<'de>> MapAccess<'de> for Map<'_, A> {
    type Error = A::Error;

    fn next_key_seed<K: DeserializeSeed<'de>>(&mut self, seed: K) -> Result<Option<K::Value>, A::Error> {
        let key = self.map.next_key_seed(Seed {
            seed,
            meter: self.meter,
        })?;
        if key.is_some() {
            self.meter.charge(self.slot)?;
        }
        Ok(key)
    }

    fn next_value_seed<T: DeserializeSeed<'de>>(&mut self, seed: T) -> Result<T::Value, A::Error> {
        self.map.next_value_seed(Seed {
            seed,
            meter: self.meter,
        })
    }

    fn size_hint(&self) -> Option<usize> {
        self.map.size_hint()
    }
}

impl<'de, 'm, A: EnumAccess<'de>> EnumAccess<'de> for Enum<'m, A> {
    type Error = A::Error;
    type Variant = Enum<'m, A::Variant>;

    fn variant_seed<S: DeserializeSeed<'de>>(self, seed: S) -> Result<(S::Value, Self::Variant), A::Error> {
        let (value, data) = self.data.variant_seed(Seed {
            seed,
            meter: self.meter,
        })?;
        Ok((
            value,
            Enum {
                data,
                meter: self.meter,
            },
        ))
    }
}

impl<'de, A: VariantAccess<'de>> VariantAccess<'de> for Enum<'_, A> {
    type Error = A::Error;

    fn unit_variant(self) -> Result<(), A::Error> {
        self.data.unit_variant()
    }

    fn newtype_variant_seed<S: DeserializeSeed<'de>>(self, seed: S) -> Result<S::Value, A::Error> {
        self.data.newtype_variant_seed(Seed {
            seed,
            meter: self.meter,
        })
    }

    fn tuple_variant<V: Visitor<'de>>(self, len: usize, visitor: V) -> Result<V::Value, A::Error> {
        let visit = Visit {
            visitor,
            meter: self.meter,
            asked: Asked::Fields,
        };
        self.data.tuple_variant(len, visit)
    }

    fn struct_variant<V: Visitor<'de>>(
        self,
        fields: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value, A::Error> {
        let visit = Visit {
            visitor,
            meter: self.meter,
            asked: Asked::Fields,
        };
        self.data.struct_variant(fields, visit)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn decode<T: de::DeserializeOwned>(text: &str, budget: usize) -> Result<(T, usize), String> {
        let meter = Meter::new(budget);
        let mut de = serde_json::Deserializer::from_str(text);
        let value = T::deserialize(Metered {
            de: &mut de,
            meter: &meter,
        })
        .map_err(|e| e.to_string())?;
        Ok((value, budget - meter.left.get()))
    }

    #[test]
    fn values_are_charged_by_what_their_target_holds() {
        let (value, cost) = decode::<serde_json::Value>(r#"[1, "abc", {"k": [true]}]"#, 10_000).unwrap();
        assert_eq!(value, serde_json::json!([1, "abc", {"k": [true]}]));
        // 3 elements, a 3-byte string, one object with one 1-byte key, one element.
        assert_eq!(cost, 3 * ANY_ELEMENT + 3 + ANY_OBJECT + ANY_MEMBER + 1 + ANY_ELEMENT);

        let (numbers, cost) = decode::<Vec<u64>>("[1, 2, 3]", 10_000).unwrap();
        assert_eq!((numbers, cost), (vec![1, 2, 3], 3 * TYPED_ELEMENT));

        #[derive(serde::Deserialize, Debug, PartialEq)]
        struct Order {
            id: u64,
            region: String,
        }
        let (order, cost) = decode::<Order>(r#"{"id": 7, "region": "eu"}"#, 10_000).unwrap();
        assert_eq!(
            order,
            Order {
                id: 7,
                region: "eu".into()
            }
        );
        // The field names are read as strings; the region holds 2 bytes.
        assert_eq!(cost, "id".len() + "region".len() + 2);
    }

    #[test]
    fn a_decoding_over_its_budget_fails_before_it_is_built() {
        let zeros = format!("[{}]", vec!["0"; 1000].join(","));
        let err = decode::<serde_json::Value>(&zeros, 100 * ANY_ELEMENT).unwrap_err();
        assert!(err.starts_with(OVER_BUDGET), "{err}");
        assert!(decode::<serde_json::Value>(&zeros, 1000 * ANY_ELEMENT).is_ok());
    }
}
