//! Kafka record batch v2 ("magic 2"), the unit the log stores byte for byte.
//!
//! ```text
//! offset  size  field                 covered by crc
//!      0     8  base_offset           no   (rewritten on append)
//!      8     4  batch_length          no   (bytes after this field)
//!     12     4  partition_leader_epoch no
//!     16     1  magic (= 2)           no
//!     17     4  crc (CRC-32C)         no
//!     21     2  attributes            yes  (bits 0-2 codec, 3 timestamp type,
//!     23     4  last_offset_delta     yes        4 transactional, 5 control)
//!     27     8  base_timestamp        yes
//!     35     8  max_timestamp         yes
//!     43     8  producer_id           yes
//!     51     2  producer_epoch        yes
//!     53     4  base_sequence         yes
//!     57     4  records_count         yes
//!     61     …  records (compressed as a whole when a codec is set)
//! ```
//! Because the CRC starts at `attributes`, assigning offsets (rewriting `base_offset`) never
//! invalidates it; changing the timestamp type or max timestamp (LogAppendTime) does.

use bytes::{BufMut, Bytes};

use crate::error::BatchError;

/// Size of the fixed v2 header.
pub const HEADER_LEN: usize = 61;
/// Bytes before the length field ends: `base_offset` + `batch_length`.
pub const LOG_OVERHEAD: usize = 12;
pub const MAGIC_V2: i8 = 2;
const CRC_START: usize = 21;

const ATTR_CODEC_MASK: i16 = 0x07;
const ATTR_LOG_APPEND_TIME: i16 = 0x08;
const ATTR_TRANSACTIONAL: i16 = 0x10;
const ATTR_CONTROL: i16 = 0x20;

/// Compression codec of a batch (attributes bits 0-2).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Compression {
    None,
    Gzip,
    Snappy,
    Lz4,
    Zstd,
}

impl Compression {
    pub fn from_id(id: u8) -> Result<Compression, BatchError> {
        Ok(match id {
            0 => Compression::None,
            1 => Compression::Gzip,
            2 => Compression::Snappy,
            3 => Compression::Lz4,
            4 => Compression::Zstd,
            other => return Err(BatchError::UnknownCompression(other)),
        })
    }
    pub fn id(self) -> u8 {
        match self {
            Compression::None => 0,
            Compression::Gzip => 1,
            Compression::Snappy => 2,
            Compression::Lz4 => 3,
            Compression::Zstd => 4,
        }
    }
}

/// The fixed header of a v2 batch, decoded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BatchHeader {
    pub base_offset: u64,
    /// Bytes after the length field: the whole batch is `batch_length + 12` bytes.
    pub batch_length: u32,
    pub partition_leader_epoch: i32,
    pub magic: i8,
    pub crc: u32,
    pub attributes: i16,
    pub last_offset_delta: i32,
    pub base_timestamp: i64,
    pub max_timestamp: i64,
    pub producer_id: i64,
    pub producer_epoch: i16,
    pub base_sequence: i32,
    pub records_count: i32,
}

fn be_i64(b: &[u8], at: usize) -> i64 {
    let mut a = [0u8; 8];
    a.copy_from_slice(&b[at..at + 8]);
    i64::from_be_bytes(a)
}
fn be_i32(b: &[u8], at: usize) -> i32 {
    let mut a = [0u8; 4];
    a.copy_from_slice(&b[at..at + 4]);
    i32::from_be_bytes(a)
}
fn be_i16(b: &[u8], at: usize) -> i16 {
    i16::from_be_bytes([b[at], b[at + 1]])
}

impl BatchHeader {
    /// Decodes the header from the first [`HEADER_LEN`] bytes of `b`.
    pub fn parse(b: &[u8]) -> Result<BatchHeader, BatchError> {
        if b.len() < HEADER_LEN {
            // The magic may be readable even when the header is short; report it first
            // so that old message formats get the right error.
            if b.len() > 16 && b[16] as i8 != MAGIC_V2 {
                return Err(BatchError::UnsupportedMagic(b[16] as i8));
            }
            return Err(BatchError::TooShort(HEADER_LEN));
        }
        let magic = b[16] as i8;
        if magic != MAGIC_V2 {
            return Err(BatchError::UnsupportedMagic(magic));
        }
        Ok(BatchHeader {
            base_offset: be_i64(b, 0) as u64,
            batch_length: be_i32(b, 8) as u32,
            partition_leader_epoch: be_i32(b, 12),
            magic,
            crc: be_i32(b, 17) as u32,
            attributes: be_i16(b, 21),
            last_offset_delta: be_i32(b, 23),
            base_timestamp: be_i64(b, 27),
            max_timestamp: be_i64(b, 35),
            producer_id: be_i64(b, 43),
            producer_epoch: be_i16(b, 51),
            base_sequence: be_i32(b, 53),
            records_count: be_i32(b, 57),
        })
    }

    /// Total size of the batch on disk.
    pub fn total_len(&self) -> usize {
        self.batch_length as usize + LOG_OVERHEAD
    }
    pub fn last_offset(&self) -> u64 {
        self.base_offset + self.last_offset_delta.max(0) as u64
    }
    pub fn next_offset(&self) -> u64 {
        self.last_offset() + 1
    }
    pub fn compression(&self) -> Result<Compression, BatchError> {
        Compression::from_id((self.attributes & ATTR_CODEC_MASK) as u8)
    }
    pub fn is_log_append_time(&self) -> bool {
        self.attributes & ATTR_LOG_APPEND_TIME != 0
    }
    pub fn is_transactional(&self) -> bool {
        self.attributes & ATTR_TRANSACTIONAL != 0
    }
    pub fn is_control(&self) -> bool {
        self.attributes & ATTR_CONTROL != 0
    }
}

/// CRC-32C over `batch[21..]`, the span the v2 `crc` field covers.
pub fn compute_crc(batch: &[u8]) -> u32 {
    crc32c::crc32c(&batch[CRC_START..])
}

/// Checks framing, magic and CRC of one complete batch. Does not look at the records.
pub fn validate(batch: &[u8]) -> Result<BatchHeader, BatchError> {
    let h = BatchHeader::parse(batch)?;
    let declared = h.batch_length as u64 + LOG_OVERHEAD as u64;
    if declared != batch.len() as u64 || (h.batch_length as usize) < HEADER_LEN - LOG_OVERHEAD {
        return Err(BatchError::LengthMismatch {
            declared,
            actual: batch.len() as u64,
        });
    }
    let actual = compute_crc(batch);
    if actual != h.crc {
        return Err(BatchError::CrcMismatch {
            expected: h.crc,
            actual,
        });
    }
    if h.records_count < 0 || h.last_offset_delta < 0 {
        return Err(BatchError::InconsistentRecords(format!(
            "records_count {} last_offset_delta {}",
            h.records_count, h.last_offset_delta
        )));
    }
    Ok(h)
}

/// A batch that passed [`check`]: everything the log verifies about a batch on its own
/// (framing, magic, CRC, record framing), so a caller that must look at a batch before
/// appending it (the broker's idempotence check) does not pay for the CRC twice.
#[derive(Debug, Clone, Copy)]
pub struct Checked<'a> {
    bytes: &'a [u8],
    header: BatchHeader,
}

impl<'a> Checked<'a> {
    pub fn bytes(&self) -> &'a [u8] {
        self.bytes
    }
    pub fn header(&self) -> &BatchHeader {
        &self.header
    }
}

/// [`validate`], then the checks an append needs that do not depend on the partition's
/// configuration: at least one record, and for an uncompressed batch the record framing
/// and count ([`check_uncompressed_framing`]); for a compressed one a `last_offset_delta`
/// that covers the records (the records themselves are not decompressed).
pub fn check(batch: &[u8]) -> Result<Checked<'_>, BatchError> {
    let h = validate(batch)?;
    if h.records_count == 0 {
        return Err(BatchError::InconsistentRecords("empty batch".into()));
    }
    if h.compression()? == Compression::None {
        check_uncompressed_framing(batch, &h)?;
    } else if h.last_offset_delta < h.records_count - 1 {
        return Err(BatchError::InconsistentRecords(format!(
            "last_offset_delta {} too small for {} records",
            h.last_offset_delta, h.records_count
        )));
    }
    Ok(Checked {
        bytes: batch,
        header: h,
    })
}

/// The first [`HEADER_LEN`] bytes of `batch` as they go to disk: `base_offset` assigned
/// and, when `log_append_time` is given, the LogAppendTime attribute and max timestamp set
/// and the CRC recomputed (over this header and the unchanged records that follow it). The
/// records are not copied: the append writes this header and `batch[HEADER_LEN..]` with
/// one vectored write.
pub fn stored_header(
    batch: &[u8],
    base_offset: u64,
    log_append_time: Option<i64>,
) -> [u8; HEADER_LEN] {
    let mut head = [0u8; HEADER_LEN];
    head.copy_from_slice(&batch[..HEADER_LEN]);
    set_base_offset(&mut head, base_offset);
    if let Some(now_ms) = log_append_time {
        let attrs = be_i16(&head, 21) | ATTR_LOG_APPEND_TIME;
        head[21..23].copy_from_slice(&attrs.to_be_bytes());
        head[35..43].copy_from_slice(&now_ms.to_be_bytes());
        let crc = crc32c::crc32c_append(crc32c::crc32c(&head[CRC_START..]), &batch[HEADER_LEN..]);
        head[17..21].copy_from_slice(&crc.to_be_bytes());
    }
    head
}

/// Writes `base_offset` into a batch; the CRC does not cover it.
pub fn set_base_offset(batch: &mut [u8], base_offset: u64) {
    batch[0..8].copy_from_slice(&base_offset.to_be_bytes());
}

/// Marks a batch as LogAppendTime with the given time and recomputes its CRC.
pub fn set_log_append_time(batch: &mut [u8], now_ms: i64) {
    let attrs = be_i16(batch, 21) | ATTR_LOG_APPEND_TIME;
    batch[21..23].copy_from_slice(&attrs.to_be_bytes());
    batch[35..43].copy_from_slice(&now_ms.to_be_bytes());
    let crc = compute_crc(batch);
    batch[17..21].copy_from_slice(&crc.to_be_bytes());
}

// ---------------------------------------------------------------------------------------
// Records inside a batch.

/// One record, decoded. Offsets and timestamps are absolute.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Record {
    pub offset: u64,
    pub timestamp: i64,
    pub key: Option<Bytes>,
    pub value: Option<Bytes>,
    pub headers: Vec<(Bytes, Option<Bytes>)>,
}

struct Cursor<'a> {
    b: &'a [u8],
    at: usize,
}

impl<'a> Cursor<'a> {
    fn err(&self, what: &str) -> BatchError {
        BatchError::InconsistentRecords(format!("{what} at byte {} of the records", self.at))
    }
    fn varlong(&mut self) -> Result<i64, BatchError> {
        let mut raw: u64 = 0;
        for shift in (0..70).step_by(7) {
            let Some(&byte) = self.b.get(self.at) else {
                return Err(self.err("truncated varint"));
            };
            self.at += 1;
            raw |= u64::from(byte & 0x7f) << shift;
            if byte & 0x80 == 0 {
                // zig-zag
                return Ok((raw >> 1) as i64 ^ -((raw & 1) as i64));
            }
        }
        Err(self.err("varint too long"))
    }
    fn varint(&mut self) -> Result<i32, BatchError> {
        let v = self.varlong()?;
        i32::try_from(v).map_err(|_| self.err("varint out of range"))
    }
    fn take(&mut self, n: usize) -> Result<&'a [u8], BatchError> {
        let end = self.at.checked_add(n).filter(|&e| e <= self.b.len());
        let Some(end) = end else {
            return Err(self.err("truncated field"));
        };
        let s = &self.b[self.at..end];
        self.at = end;
        Ok(s)
    }
    fn nullable(&mut self, src: &Bytes) -> Result<Option<Bytes>, BatchError> {
        let len = self.varint()?;
        if len < 0 {
            return Ok(None);
        }
        let start = self.at;
        self.take(len as usize)?;
        Ok(Some(src.slice(start..self.at)))
    }
}

/// The most a batch may decompress to: a bound against decompression bombs (a few bytes
/// that claim or expand to gigabytes) on a path that faces the network.
pub const MAX_DECOMPRESSED: usize = 256 << 20;

/// Decompresses the records section of a batch (everything after the header).
pub fn decompress(codec: Compression, data: &[u8]) -> Result<Vec<u8>, BatchError> {
    use std::io::Read;
    let e = |x: &dyn std::fmt::Display| BatchError::Decompress(x.to_string());
    let too_big = || BatchError::Decompress(format!("expands beyond {MAX_DECOMPRESSED} bytes"));
    let limit = MAX_DECOMPRESSED as u64 + 1;
    let snappy_block = |block: &[u8], budget: usize| -> Result<Vec<u8>, BatchError> {
        let n = snap::raw::decompress_len(block).map_err(|x| e(&x))?;
        if n > budget {
            return Err(too_big());
        }
        snap::raw::Decoder::new()
            .decompress_vec(block)
            .map_err(|x| e(&x))
    };
    let mut out = Vec::with_capacity(data.len().saturating_mul(4).min(MAX_DECOMPRESSED));
    match codec {
        Compression::None => out.extend_from_slice(data),
        Compression::Gzip => {
            flate2::read::GzDecoder::new(data)
                .take(limit)
                .read_to_end(&mut out)
                .map_err(|x| e(&x))?;
        }
        Compression::Snappy => {
            if data.starts_with(XERIAL_MAGIC) {
                // Java's xerial framing: 16-byte header, then (u32 length, raw snappy) blocks.
                let mut at = 16;
                while at < data.len() {
                    if at + 4 > data.len() {
                        return Err(e(&"truncated xerial block"));
                    }
                    let len =
                        u32::from_be_bytes([data[at], data[at + 1], data[at + 2], data[at + 3]])
                            as usize;
                    at += 4;
                    let block = data
                        .get(at..at + len)
                        .ok_or_else(|| e(&"truncated xerial block"))?;
                    out.extend(snappy_block(block, MAX_DECOMPRESSED - out.len())?);
                    at += len;
                }
            } else {
                out = snappy_block(data, MAX_DECOMPRESSED)?;
            }
        }
        Compression::Lz4 => {
            lz4_flex::frame::FrameDecoder::new(data)
                .take(limit)
                .read_to_end(&mut out)
                .map_err(|x| e(&x))?;
        }
        Compression::Zstd => {
            zstd::stream::read::Decoder::new(data)
                .and_then(|d| d.take(limit).read_to_end(&mut out))
                .map_err(|x| e(&x))?;
        }
    }
    if out.len() > MAX_DECOMPRESSED {
        return Err(too_big());
    }
    Ok(out)
}

const XERIAL_MAGIC: &[u8] = b"\x82SNAPPY\x00";

/// Compresses a records section with `codec` in the framing Kafka clients expect.
pub fn compress(codec: Compression, data: &[u8]) -> Result<Vec<u8>, BatchError> {
    use std::io::Write;
    let e = |x: &dyn std::fmt::Display| BatchError::Decompress(format!("compress: {x}"));
    Ok(match codec {
        Compression::None => data.to_vec(),
        Compression::Gzip => {
            let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
            enc.write_all(data).map_err(|x| e(&x))?;
            enc.finish().map_err(|x| e(&x))?
        }
        Compression::Snappy => snap::raw::Encoder::new()
            .compress_vec(data)
            .map_err(|x| e(&x))?,
        Compression::Lz4 => {
            let mut enc = lz4_flex::frame::FrameEncoder::new(Vec::new());
            enc.write_all(data).map_err(|x| e(&x))?;
            enc.finish().map_err(|x| e(&x))?
        }
        Compression::Zstd => zstd::bulk::compress(data, 3).map_err(|x| e(&x))?,
    })
}

/// Decodes every record of a complete, validated batch.
pub fn records(batch: &[u8]) -> Result<Vec<Record>, BatchError> {
    let h = BatchHeader::parse(batch)?;
    let body = &batch[HEADER_LEN..];
    let data = match h.compression()? {
        Compression::None => Bytes::copy_from_slice(body),
        codec => Bytes::from(decompress(codec, body)?),
    };
    let mut c = Cursor { b: &data, at: 0 };
    // Never trust a count for an allocation: each record takes at least 7 bytes.
    let mut out = Vec::with_capacity((h.records_count.max(0) as usize).min(data.len() / 7));
    let mut last_delta = -1i64;
    for _ in 0..h.records_count {
        let len = c.varint()?;
        if len < 0 {
            return Err(c.err("negative record length"));
        }
        let end = c.at + len as usize;
        if end > data.len() {
            return Err(c.err("record overruns the batch"));
        }
        let _attributes = c.take(1)?;
        let ts_delta = c.varlong()?;
        let offset_delta = c.varint()? as i64;
        if offset_delta <= last_delta || offset_delta > h.last_offset_delta as i64 {
            return Err(c.err("offset delta out of order"));
        }
        last_delta = offset_delta;
        let key = c.nullable(&data)?;
        let value = c.nullable(&data)?;
        let n_headers = c.varint()?;
        if n_headers < 0 {
            return Err(c.err("negative header count"));
        }
        let mut headers = Vec::with_capacity((n_headers as usize).min(16));
        for _ in 0..n_headers {
            let k = c.nullable(&data)?.ok_or_else(|| c.err("null header key"))?;
            let v = c.nullable(&data)?;
            headers.push((k, v));
        }
        if c.at != end {
            return Err(c.err("record length does not match its fields"));
        }
        let timestamp = if h.is_log_append_time() {
            h.max_timestamp
        } else {
            h.base_timestamp.wrapping_add(ts_delta)
        };
        out.push(Record {
            offset: h.base_offset + offset_delta as u64,
            timestamp,
            key,
            value,
            headers,
        });
    }
    if c.at != data.len() {
        return Err(c.err("bytes left after the last record"));
    }
    Ok(out)
}

fn put_varlong(out: &mut Vec<u8>, v: i64) {
    let mut z = ((v << 1) ^ (v >> 63)) as u64;
    loop {
        let byte = (z & 0x7f) as u8;
        z >>= 7;
        if z == 0 {
            out.push(byte);
            return;
        }
        out.push(byte | 0x80);
    }
}

fn put_nullable(out: &mut Vec<u8>, b: Option<&[u8]>) {
    match b {
        None => put_varlong(out, -1),
        Some(b) => {
            put_varlong(out, b.len() as i64);
            out.extend_from_slice(b);
        }
    }
}

/// Parameters of a batch built by [`build`], other than its records.
#[derive(Debug, Clone, Copy)]
pub struct BuildOptions {
    pub base_offset: u64,
    pub compression: Compression,
    /// Set when the offsets of the batch are not all present (compaction): the
    /// `last_offset_delta` is kept so that the next offset stays known.
    pub last_offset_delta: Option<i32>,
    pub producer_id: i64,
    pub producer_epoch: i16,
    pub base_sequence: i32,
    pub attributes_extra: i16,
    pub partition_leader_epoch: i32,
}

impl Default for BuildOptions {
    fn default() -> Self {
        BuildOptions {
            base_offset: 0,
            compression: Compression::None,
            last_offset_delta: None,
            producer_id: -1,
            producer_epoch: -1,
            base_sequence: -1,
            attributes_extra: 0,
            partition_leader_epoch: -1,
        }
    }
}

/// Encodes records into a v2 batch. Record offsets must be ascending and not below
/// `opts.base_offset`. Used by compaction and by tests; the append path never re-encodes.
pub fn build(opts: BuildOptions, records: &[Record]) -> Result<Vec<u8>, BatchError> {
    let base_ts = records.first().map_or(-1, |r| r.timestamp);
    let max_ts = records.iter().map(|r| r.timestamp).max().unwrap_or(-1);
    let mut body = Vec::new();
    let mut rec = Vec::new();
    let mut last_delta = 0i64;
    for r in records {
        rec.clear();
        rec.push(0); // record attributes, unused
        put_varlong(&mut rec, r.timestamp.wrapping_sub(base_ts));
        let delta = r.offset as i64 - opts.base_offset as i64;
        last_delta = delta;
        put_varlong(&mut rec, delta);
        put_nullable(&mut rec, r.key.as_deref());
        put_nullable(&mut rec, r.value.as_deref());
        put_varlong(&mut rec, r.headers.len() as i64);
        for (k, v) in &r.headers {
            put_nullable(&mut rec, Some(k));
            put_nullable(&mut rec, v.as_deref());
        }
        put_varlong(&mut body, rec.len() as i64);
        body.extend_from_slice(&rec);
    }
    let body = compress(opts.compression, &body)?;
    let mut out = Vec::with_capacity(HEADER_LEN + body.len());
    out.put_u64(opts.base_offset);
    out.put_i32((HEADER_LEN - LOG_OVERHEAD + body.len()) as i32);
    out.put_i32(opts.partition_leader_epoch);
    out.put_i8(MAGIC_V2);
    out.put_u32(0); // crc, filled below
    out.put_i16(opts.attributes_extra | i16::from(opts.compression.id()));
    out.put_i32(opts.last_offset_delta.unwrap_or(last_delta as i32));
    out.put_i64(base_ts);
    out.put_i64(max_ts);
    out.put_i64(opts.producer_id);
    out.put_i16(opts.producer_epoch);
    out.put_i32(opts.base_sequence);
    out.put_i32(records.len() as i32);
    out.extend_from_slice(&body);
    let crc = compute_crc(&out);
    out[17..21].copy_from_slice(&crc.to_be_bytes());
    Ok(out)
}

/// Walks the uncompressed records of a batch checking only their framing and count:
/// the cheap validation done on every append of an uncompressed batch.
pub fn check_uncompressed_framing(batch: &[u8], h: &BatchHeader) -> Result<(), BatchError> {
    let data = &batch[HEADER_LEN..];
    let mut c = Cursor { b: data, at: 0 };
    let mut n = 0i32;
    while c.at < data.len() {
        let len = c.varint()?;
        if len < 0 {
            return Err(c.err("negative record length"));
        }
        c.take(len as usize)?;
        n += 1;
    }
    if n != h.records_count {
        return Err(BatchError::InconsistentRecords(format!(
            "header says {} records, found {n}",
            h.records_count
        )));
    }
    if h.records_count > 0 && h.last_offset_delta < h.records_count - 1 {
        return Err(BatchError::InconsistentRecords(format!(
            "last_offset_delta {} too small for {} records",
            h.last_offset_delta, h.records_count
        )));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rec(offset: u64, key: &str, value: Option<&str>) -> Record {
        Record {
            offset,
            timestamp: 1_000 + offset as i64,
            key: Some(Bytes::copy_from_slice(key.as_bytes())),
            value: value.map(|v| Bytes::copy_from_slice(v.as_bytes())),
            headers: vec![(Bytes::from_static(b"h"), Some(Bytes::from_static(b"v")))],
        }
    }

    #[test]
    fn build_and_decode_round_trip_every_codec() {
        let recs = vec![
            rec(10, "a", Some("1")),
            rec(11, "b", None),
            rec(13, "c", Some("3")),
        ];
        for codec in [
            Compression::None,
            Compression::Gzip,
            Compression::Snappy,
            Compression::Lz4,
            Compression::Zstd,
        ] {
            let opts = BuildOptions {
                base_offset: 10,
                compression: codec,
                ..Default::default()
            };
            let b = build(opts, &recs).expect("build");
            let h = validate(&b).expect("valid");
            assert_eq!(h.compression().expect("codec"), codec);
            assert_eq!(h.last_offset_delta, 3);
            assert_eq!(records(&b).expect("decode"), recs, "{codec:?}");
        }
    }

    #[test]
    fn base_offset_is_outside_the_crc() {
        let mut b = build(BuildOptions::default(), &[rec(0, "k", Some("v"))]).expect("build");
        set_base_offset(&mut b, 12345);
        let h = validate(&b).expect("still valid");
        assert_eq!(h.base_offset, 12345);
        assert_eq!(records(&b).expect("decode")[0].offset, 12345);
    }

    #[test]
    fn log_append_time_rewrites_crc() {
        let mut b = build(BuildOptions::default(), &[rec(0, "k", Some("v"))]).expect("build");
        set_log_append_time(&mut b, 99);
        let h = validate(&b).expect("valid");
        assert!(h.is_log_append_time());
        assert_eq!(records(&b).expect("decode")[0].timestamp, 99);
    }

    #[test]
    fn stored_header_matches_rewriting_the_whole_batch() {
        let b = build(
            BuildOptions::default(),
            &[rec(0, "k", Some("v")), rec(1, "k2", None)],
        )
        .expect("build");
        for lat in [None, Some(99)] {
            let mut whole = b.clone();
            set_base_offset(&mut whole, 4711);
            if let Some(t) = lat {
                set_log_append_time(&mut whole, t);
            }
            let head = stored_header(&b, 4711, lat);
            assert_eq!(&head[..], &whole[..HEADER_LEN], "{lat:?}");
            let mut stored = head.to_vec();
            stored.extend_from_slice(&b[HEADER_LEN..]);
            let h = validate(&stored).expect("valid");
            assert_eq!(
                (h.base_offset, h.is_log_append_time()),
                (4711, lat.is_some())
            );
        }
    }

    #[test]
    fn check_refuses_what_append_refuses() {
        let good = build(BuildOptions::default(), &[rec(0, "k", Some("v"))]).expect("build");
        assert_eq!(check(&good).expect("good").header().records_count, 1);
        let empty = build(BuildOptions::default(), &[]).expect("build");
        assert!(matches!(
            check(&empty),
            Err(BatchError::InconsistentRecords(_))
        ));
        // One record claimed, two present: CRC recomputed so only the framing is wrong.
        let two = build(
            BuildOptions::default(),
            &[rec(0, "a", Some("1")), rec(1, "b", Some("2"))],
        )
        .expect("build");
        let mut lie = two.clone();
        lie[57..61].copy_from_slice(&1i32.to_be_bytes());
        let crc = compute_crc(&lie);
        lie[17..21].copy_from_slice(&crc.to_be_bytes());
        assert!(matches!(
            check(&lie),
            Err(BatchError::InconsistentRecords(_))
        ));
        let mut bad_crc = good.clone();
        let last = bad_crc.len() - 1;
        bad_crc[last] ^= 1;
        assert!(matches!(
            check(&bad_crc),
            Err(BatchError::CrcMismatch { .. })
        ));
    }

    #[test]
    fn rejects_bad_input() {
        let good = build(BuildOptions::default(), &[rec(0, "k", Some("v"))]).expect("build");
        let check = |b: &[u8], want: &dyn Fn(&BatchError) -> bool| {
            let err = validate(b).expect_err("must be refused");
            assert!(want(&err), "unexpected {err:?}");
        };
        check(&good[..30], &|e| matches!(e, BatchError::TooShort(_)));
        check(&good[..good.len() - 1], &|e| {
            matches!(e, BatchError::LengthMismatch { .. })
        });
        let mut m = good.clone();
        m[16] = 1;
        check(&m, &|e| matches!(e, BatchError::UnsupportedMagic(1)));
        let mut c = good.clone();
        let last = c.len() - 1;
        c[last] ^= 0x40;
        check(&c, &|e| matches!(e, BatchError::CrcMismatch { .. }));
    }

    #[test]
    fn framing_check_counts_records() {
        let mut b = build(
            BuildOptions::default(),
            &[rec(0, "k", Some("v")), rec(1, "j", None)],
        )
        .expect("build");
        let h = validate(&b).expect("valid");
        check_uncompressed_framing(&b, &h).expect("consistent");
        // Claim three records; fix the CRC so only the count is wrong.
        b[57..61].copy_from_slice(&3i32.to_be_bytes());
        let crc = compute_crc(&b);
        b[17..21].copy_from_slice(&crc.to_be_bytes());
        let h = validate(&b).expect("crc ok");
        assert!(matches!(
            check_uncompressed_framing(&b, &h),
            Err(BatchError::InconsistentRecords(_))
        ));
    }

    proptest::proptest! {
        /// Arbitrary bytes, and arbitrary bytes behind a valid header and CRC, never panic
        /// or allocate unboundedly: they decode or give a typed error.
        #[test]
        fn arbitrary_input_never_panics(
            body in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..300),
            count in proptest::prelude::any::<i32>(),
            delta in proptest::prelude::any::<i32>(),
            codec in 0u8..8,
        ) {
            let _ = validate(&body);
            let _ = records(&body);
            let mut b = build(BuildOptions::default(), &[]).expect("empty batch");
            b.extend_from_slice(&body);
            let len = (b.len() - LOG_OVERHEAD) as i32;
            b[8..12].copy_from_slice(&len.to_be_bytes());
            b[21..23].copy_from_slice(&i16::from(codec).to_be_bytes());
            b[23..27].copy_from_slice(&delta.to_be_bytes());
            b[57..61].copy_from_slice(&count.to_be_bytes());
            let crc = compute_crc(&b);
            b[17..21].copy_from_slice(&crc.to_be_bytes());
            if let Ok(h) = validate(&b) {
                let _ = check_uncompressed_framing(&b, &h);
                let _ = records(&b);
            }
        }
    }

    #[test]
    fn snappy_bomb_is_refused() {
        // A 6-byte snappy block that claims to expand to ~4 GiB.
        let bomb = [0xff, 0xff, 0xff, 0xff, 0x0f, 0x00];
        assert!(matches!(
            decompress(Compression::Snappy, &bomb),
            Err(BatchError::Decompress(_))
        ));
    }

    #[test]
    fn xerial_snappy_is_read() {
        let raw = b"hello hello hello hello".to_vec();
        let block = snap::raw::Encoder::new()
            .compress_vec(&raw)
            .expect("compress");
        let mut framed = XERIAL_MAGIC.to_vec();
        framed.extend_from_slice(&[0, 0, 0, 1, 0, 0, 0, 1]);
        framed.extend_from_slice(&(block.len() as u32).to_be_bytes());
        framed.extend_from_slice(&block);
        assert_eq!(
            decompress(Compression::Snappy, &framed).expect("xerial"),
            raw
        );
    }
}
