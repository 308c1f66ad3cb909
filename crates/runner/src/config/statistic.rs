//! `data.mean` and `data.std`: one number for every channel, a list of one per channel, or
//! `"auto"`, measured on the training split. A config written before per-channel values holds
//! one number, which still reads.

use std::fmt;

use serde::de::{self, SeqAccess, Visitor};
use serde::{Deserialize, Deserializer, Serialize, Serializer};

#[derive(Clone, Debug, PartialEq)]
pub enum Statistic {
    Values(Vec<f32>),
    Auto,
}

impl Statistic {
    pub fn value(value: f32) -> Self {
        Statistic::Values(vec![value])
    }
}

impl Serialize for Statistic {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        match self {
            Statistic::Values(values) if values.len() == 1 => values[0].serialize(serializer),
            Statistic::Values(values) => values.serialize(serializer),
            Statistic::Auto => serializer.serialize_str("auto"),
        }
    }
}

struct StatisticVisitor;

const EXPECTED: &str = "a number, a list of one number per channel, or \"auto\"";

impl<'de> Visitor<'de> for StatisticVisitor {
    type Value = Statistic;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str(EXPECTED)
    }

    fn visit_f64<E: de::Error>(self, v: f64) -> Result<Statistic, E> {
        Ok(Statistic::value(v as f32))
    }

    fn visit_i64<E: de::Error>(self, v: i64) -> Result<Statistic, E> {
        Ok(Statistic::value(v as f32))
    }

    fn visit_u64<E: de::Error>(self, v: u64) -> Result<Statistic, E> {
        Ok(Statistic::value(v as f32))
    }

    fn visit_str<E: de::Error>(self, v: &str) -> Result<Statistic, E> {
        match v {
            "auto" => Ok(Statistic::Auto),
            other => Err(E::invalid_value(de::Unexpected::Str(other), &EXPECTED)),
        }
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Statistic, A::Error> {
        let mut values = Vec::new();
        while let Some(v) = seq.next_element::<f64>()? {
            values.push(v as f32);
        }
        if values.is_empty() {
            return Err(de::Error::invalid_length(0, &EXPECTED));
        }
        Ok(Statistic::Values(values))
    }
}

impl<'de> Deserialize<'de> for Statistic {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Statistic, D::Error> {
        deserializer.deserialize_any(StatisticVisitor)
    }
}
