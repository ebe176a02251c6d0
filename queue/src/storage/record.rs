//! The on-disk record format of the segment log.
//!
//! Every record is framed as `len: u32 | crc32: u32 | kind: u8 | payload`, little-endian, where
//! `len` counts `kind + payload` and the CRC covers the same bytes. A torn or corrupted tail is
//! detected by the frame (short read) or the checksum, and recovery stops there: the writer never
//! appends to a recovered segment, so garbage is never followed by acknowledged data.

use std::io::{self, Read};

const SEND: u8 = 1;
const DELETE: u8 = 2;
const DELIVER: u8 = 3;
const META: u8 = 4;

/// Upper bound on one record, so a corrupted length field cannot make recovery allocate gigabytes.
pub const MAX_RECORD: usize = 64 * 1024 * 1024;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Record {
    /// A message accepted by the queue.
    Send {
        id: u64,
        deliveries: u32,
        body: String,
    },
    /// A message acknowledged (or moved to the dead-letter queue).
    Delete { id: u64 },
    /// A message handed to a receiver once more: the delivery count survives a restart.
    Deliver { id: u64 },
    /// Written first in every segment, so ids keep increasing after compaction removed the
    /// segments that held the highest ids.
    Meta { next_id: u64 },
}

impl Record {
    /// The framed bytes of this record.
    pub fn encode(&self) -> Vec<u8> {
        let mut body = Vec::with_capacity(32);
        match self {
            Record::Send {
                id,
                deliveries,
                body: b,
            } => {
                body.push(SEND);
                body.extend_from_slice(&id.to_le_bytes());
                body.extend_from_slice(&deliveries.to_le_bytes());
                body.extend_from_slice(b.as_bytes());
            }
            Record::Delete { id } => {
                body.push(DELETE);
                body.extend_from_slice(&id.to_le_bytes());
            }
            Record::Deliver { id } => {
                body.push(DELIVER);
                body.extend_from_slice(&id.to_le_bytes());
            }
            Record::Meta { next_id } => {
                body.push(META);
                body.extend_from_slice(&next_id.to_le_bytes());
            }
        }
        let mut out = Vec::with_capacity(body.len() + 8);
        out.extend_from_slice(&(body.len() as u32).to_le_bytes());
        out.extend_from_slice(&crc32fast::hash(&body).to_le_bytes());
        out.extend_from_slice(&body);
        out
    }

    fn decode(buf: &[u8]) -> Option<Record> {
        let (&kind, rest) = buf.split_first()?;
        let id = |r: &[u8]| {
            r.get(..8)
                .and_then(|b| b.try_into().ok())
                .map(u64::from_le_bytes)
        };
        match kind {
            SEND => {
                let id = id(rest)?;
                let deliveries = u32::from_le_bytes(rest.get(8..12)?.try_into().ok()?);
                let body = String::from_utf8(rest.get(12..)?.to_vec()).ok()?;
                Some(Record::Send {
                    id,
                    deliveries,
                    body,
                })
            }
            DELETE if rest.len() == 8 => Some(Record::Delete { id: id(rest)? }),
            DELIVER if rest.len() == 8 => Some(Record::Deliver { id: id(rest)? }),
            META if rest.len() == 8 => Some(Record::Meta { next_id: id(rest)? }),
            _ => None,
        }
    }
}

/// Why reading a segment stopped before its end.
#[derive(Debug, PartialEq, Eq)]
pub enum Tail {
    /// The segment ended on a record boundary.
    Clean,
    /// The segment ends in a partial or corrupt record at this byte offset.
    Torn(u64),
}

/// Reads every intact record of a segment, in order, stopping at the first torn or corrupt one.
pub fn read_all(mut r: impl Read) -> io::Result<(Vec<Record>, Tail)> {
    let mut data = Vec::new();
    r.read_to_end(&mut data)?;
    let mut out = Vec::new();
    let mut pos = 0usize;
    while pos < data.len() {
        let Some(header) = data.get(pos..pos + 8) else {
            return Ok((out, Tail::Torn(pos as u64)));
        };
        let len = u32::from_le_bytes([header[0], header[1], header[2], header[3]]) as usize;
        let crc = u32::from_le_bytes([header[4], header[5], header[6], header[7]]);
        let body = match data.get(pos + 8..pos + 8 + len) {
            Some(b) if len <= MAX_RECORD && crc32fast::hash(b) == crc => b,
            _ => return Ok((out, Tail::Torn(pos as u64))),
        };
        match Record::decode(body) {
            Some(rec) => out.push(rec),
            None => return Ok((out, Tail::Torn(pos as u64))),
        }
        pos += 8 + len;
    }
    Ok((out, Tail::Clean))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn all() -> Vec<Record> {
        vec![
            Record::Meta { next_id: 7 },
            Record::Send {
                id: 7,
                deliveries: 2,
                body: "héllo".into(),
            },
            Record::Deliver { id: 7 },
            Record::Delete { id: 7 },
        ]
    }

    #[test]
    fn round_trips() {
        let bytes: Vec<u8> = all().iter().flat_map(Record::encode).collect();
        let (recs, tail) = read_all(&bytes[..]).unwrap();
        assert_eq!(recs, all());
        assert_eq!(tail, Tail::Clean);
    }

    #[test]
    fn torn_tail_stops_at_last_whole_record() {
        let bytes: Vec<u8> = all().iter().flat_map(Record::encode).collect();
        for cut in 1..bytes.len() {
            let (recs, _) = read_all(&bytes[..cut]).unwrap();
            let whole: Vec<u8> = recs.iter().flat_map(Record::encode).collect();
            assert_eq!(&bytes[..whole.len()], &whole[..]);
        }
    }

    #[test]
    fn flipped_bit_is_detected() {
        let mut bytes: Vec<u8> = all().iter().flat_map(Record::encode).collect();
        let second = Record::Meta { next_id: 7 }.encode().len() + 12;
        bytes[second] ^= 0x40;
        let (recs, tail) = read_all(&bytes[..]).unwrap();
        assert_eq!(recs.len(), 1);
        assert!(matches!(tail, Tail::Torn(_)));
    }
}
