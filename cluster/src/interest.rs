//! Topic interest: which topics a worker has subscribers for, as a fixed-size Bloom filter that
//! travels in its node state (and gossip), so a topic publish goes only to workers that may have
//! subscribers. A false positive costs one request that delivers nothing; a false negative
//! cannot happen (a worker's filter holds every topic it has subscribers for). The filter is
//! 4,096 bits whatever the number of topics: with 500 topics on a worker about 1 % of the other
//! topics' publishes still reach it, with 2,000 about 25 %.
//!
//! The hash is FNV-1a, written here because it must be the same on every node and every
//! version (std's `DefaultHasher` promises neither).

use std::fmt;
use std::str::FromStr;

use base64::engine::general_purpose::STANDARD_NO_PAD;
use base64::Engine;
use ews_proto::topic::Topic;
use serde::{Deserialize, Deserializer, Serialize, Serializer};

const BITS: usize = 4096;
const BYTES: usize = BITS / 8;
/// Bits set per topic.
const HASHES: u64 = 3;

/// A worker's topic interest.
#[derive(Clone, PartialEq, Eq)]
pub struct Interest {
    bits: Box<[u8; BYTES]>,
}

impl Interest {
    /// No topic: the worker receives no topic publish.
    pub fn none() -> Interest {
        Interest {
            bits: Box::new([0; BYTES]),
        }
    }

    /// The topics this worker has subscribers for.
    pub fn of<'a>(topics: impl IntoIterator<Item = &'a str>) -> Interest {
        let mut i = Interest::none();
        for t in topics {
            for bit in positions(t) {
                i.bits[bit / 8] |= 1 << (bit % 8);
            }
        }
        i
    }

    /// Whether this worker may have subscribers for `topic`.
    pub fn may_contain(&self, topic: &Topic) -> bool {
        positions(topic.as_str()).all(|bit| self.bits[bit / 8] & (1 << (bit % 8)) != 0)
    }
}

/// Kirsch–Mitzenmacher: `HASHES` positions from two halves of one 64-bit hash.
fn positions(topic: &str) -> impl Iterator<Item = usize> {
    let h = fnv1a(topic.as_bytes());
    let (a, b) = (h & 0xffff_ffff, (h >> 32) | 1);
    (0..HASHES).map(move |i| (a.wrapping_add(i.wrapping_mul(b)) % BITS as u64) as usize)
}

fn fnv1a(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |h, &b| {
        (h ^ u64::from(b)).wrapping_mul(0x0000_0100_0000_01b3)
    })
}

/// On the wire: empty for no topic, else the filter in base64 (683 characters).
impl fmt::Display for Interest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.bits.iter().all(|&b| b == 0) {
            return Ok(());
        }
        f.write_str(&STANDARD_NO_PAD.encode(&self.bits[..]))
    }
}

impl fmt::Debug for Interest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let set: u32 = self.bits.iter().map(|b| b.count_ones()).sum();
        write!(f, "Interest({set} of {BITS} bits)")
    }
}

impl FromStr for Interest {
    type Err = String;

    fn from_str(s: &str) -> Result<Interest, String> {
        if s.is_empty() {
            return Ok(Interest::none());
        }
        let bytes = STANDARD_NO_PAD
            .decode(s)
            .map_err(|e| format!("interest: {e}"))?;
        let bits: [u8; BYTES] = bytes
            .try_into()
            .map_err(|b: Vec<u8>| format!("interest: {} bytes, not {BYTES}", b.len()))?;
        Ok(Interest {
            bits: Box::new(bits),
        })
    }
}

impl Serialize for Interest {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for Interest {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Interest, D::Error> {
        let s = String::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(s: &str) -> Topic {
        Topic::parse(s).unwrap()
    }

    #[test]
    fn holds_every_topic_added_and_round_trips() {
        let names: Vec<String> = (0..500).map(|i| format!("room.{i}")).collect();
        let i = Interest::of(names.iter().map(String::as_str));
        assert!(names.iter().all(|n| i.may_contain(&t(n))));
        let back: Interest = i.to_string().parse().unwrap();
        assert_eq!(back, i);
        let false_positives = (0..10_000)
            .filter(|k| i.may_contain(&t(&format!("other.{k}"))))
            .count();
        assert!(false_positives < 300, "{false_positives} of 10,000");
    }

    #[test]
    fn none_holds_nothing_and_bad_text_is_refused() {
        let none = Interest::none();
        assert!(!none.may_contain(&t("news")));
        assert_eq!(none.to_string(), "");
        assert_eq!("".parse::<Interest>(), Ok(none));
        assert!("not base64!".parse::<Interest>().is_err());
        assert!("AAAA".parse::<Interest>().is_err());
    }

    #[test]
    fn the_hash_is_fixed() {
        // FNV-1a test vector: the filter must mean the same on every node and version.
        assert_eq!(fnv1a(b"a"), 0xaf63_dc4c_8601_ec8c);
    }
}
