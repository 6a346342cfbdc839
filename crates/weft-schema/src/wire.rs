//! The Confluent wire format: the prefix serializers put before a record's payload.
//!
//! - magic byte `0`, then the schema id as a 4-byte big-endian integer;
//! - magic byte `1`, then the schema's 16-byte GUID;
//! - for Protobuf only, after either: the message indexes, a zigzag varint count followed
//!   by that many zigzag varints (a count of 0 stands for `[0]`, the first message).

/// How a payload names its schema.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SchemaRef {
    Id(u32),
    Guid([u8; 16]),
}

/// Why a payload's prefix is not the wire format.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum WireError {
    #[error("payload is empty, so it carries no schema id")]
    Empty,
    #[error("payload starts with byte {0:#04x}, not the wire format's magic byte 0 or 1")]
    UnknownMagic(u8),
    #[error("payload of {len} bytes is too short for its schema {what}")]
    Truncated { len: usize, what: &'static str },
    #[error("protobuf message indexes are malformed: {0}")]
    BadMessageIndexes(&'static str),
}

/// Splits `payload` into the schema it names and the rest.
pub fn split_prefix(payload: &[u8]) -> Result<(SchemaRef, &[u8]), WireError> {
    let (&magic, rest) = payload.split_first().ok_or(WireError::Empty)?;
    match magic {
        0 => {
            let (id, rest) = rest.split_first_chunk::<4>().ok_or(WireError::Truncated {
                len: payload.len(),
                what: "id",
            })?;
            Ok((SchemaRef::Id(u32::from_be_bytes(*id)), rest))
        }
        1 => {
            let (guid, rest) = rest.split_first_chunk::<16>().ok_or(WireError::Truncated {
                len: payload.len(),
                what: "guid",
            })?;
            Ok((SchemaRef::Guid(*guid), rest))
        }
        other => Err(WireError::UnknownMagic(other)),
    }
}

/// The most message indexes a prefix may claim: nesting deeper than this is not a schema
/// anyone wrote, and the bound keeps a hostile count from allocating.
const MAX_MESSAGE_INDEXES: i64 = 64;

/// Splits the Protobuf message indexes off `rest` (what follows the schema reference).
/// Returns `[0]` for the count-0 shorthand.
pub fn split_message_indexes(rest: &[u8]) -> Result<(Vec<i32>, &[u8]), WireError> {
    let (count, mut rest) = read_zigzag(rest)?;
    if count == 0 {
        return Ok((vec![0], rest));
    }
    if !(1..=MAX_MESSAGE_INDEXES).contains(&count) {
        return Err(WireError::BadMessageIndexes("count out of range"));
    }
    let mut indexes = Vec::with_capacity(count as usize);
    for _ in 0..count {
        let (index, tail) = read_zigzag(rest)?;
        let index =
            i32::try_from(index).map_err(|_| WireError::BadMessageIndexes("index out of range"))?;
        if index < 0 {
            return Err(WireError::BadMessageIndexes("negative index"));
        }
        indexes.push(index);
        rest = tail;
    }
    Ok((indexes, rest))
}

/// Writes the message-index prefix for `indexes` (`[0]` as the count-0 shorthand).
pub fn write_message_indexes(indexes: &[i32], out: &mut Vec<u8>) {
    if indexes == [0] {
        write_zigzag(0, out);
        return;
    }
    write_zigzag(indexes.len() as i64, out);
    for &i in indexes {
        write_zigzag(i64::from(i), out);
    }
}

fn read_zigzag(bytes: &[u8]) -> Result<(i64, &[u8]), WireError> {
    let mut value: u64 = 0;
    for (i, &b) in bytes.iter().enumerate().take(10) {
        value |= u64::from(b & 0x7f) << (7 * i);
        if b & 0x80 == 0 {
            let decoded = ((value >> 1) as i64) ^ -((value & 1) as i64);
            return Ok((decoded, &bytes[i + 1..]));
        }
    }
    Err(WireError::BadMessageIndexes("varint truncated or too long"))
}

fn write_zigzag(v: i64, out: &mut Vec<u8>) {
    let mut z = ((v << 1) ^ (v >> 63)) as u64;
    while z >= 0x80 {
        out.push((z as u8) | 0x80);
        z >>= 7;
    }
    out.push(z as u8);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn id_prefix() {
        let (r, rest) = split_prefix(&[0, 0, 0, 1, 2, 9, 9]).expect("id prefix");
        assert_eq!(r, SchemaRef::Id(258));
        assert_eq!(rest, &[9, 9]);
    }

    #[test]
    fn guid_prefix() {
        let mut p = vec![1];
        p.extend(1..=16u8);
        p.push(7);
        let (r, rest) = split_prefix(&p).expect("guid prefix");
        let mut g = [0u8; 16];
        g.iter_mut().zip(1..=16u8).for_each(|(d, s)| *d = s);
        assert_eq!(r, SchemaRef::Guid(g));
        assert_eq!(rest, &[7]);
    }

    #[test]
    fn bad_prefixes() {
        assert_eq!(split_prefix(&[]), Err(WireError::Empty));
        assert_eq!(
            split_prefix(b"{\"a\":1}"),
            Err(WireError::UnknownMagic(b'{'))
        );
        assert_eq!(
            split_prefix(&[0, 0, 1]),
            Err(WireError::Truncated { len: 3, what: "id" })
        );
        assert!(matches!(
            split_prefix(&[1, 0]),
            Err(WireError::Truncated { what: "guid", .. })
        ));
    }

    #[test]
    fn message_indexes_round_trip() {
        for idx in [vec![0], vec![1], vec![0, 2], vec![3, 1, 4]] {
            let mut out = Vec::new();
            write_message_indexes(&idx, &mut out);
            out.push(0xAA);
            let (back, rest) = split_message_indexes(&out).expect("indexes");
            assert_eq!(back, idx);
            assert_eq!(rest, &[0xAA]);
        }
        // count 0 is one byte
        let mut out = Vec::new();
        write_message_indexes(&[0], &mut out);
        assert_eq!(out, vec![0]);
    }

    #[test]
    fn hostile_message_indexes() {
        // count 2^40
        let mut out = Vec::new();
        write_zigzag(1 << 40, &mut out);
        assert!(split_message_indexes(&out).is_err());
        // negative count
        assert!(split_message_indexes(&[1]).is_err());
        // truncated
        assert!(split_message_indexes(&[4, 2]).is_err());
        assert!(split_message_indexes(&[0xff; 11]).is_err());
    }
}
