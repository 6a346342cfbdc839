//! PostgreSQL logical decoding through SQL: a `pgoutput` replication slot and a publication
//! restricted to the outbox table's inserts, read with `pg_logical_slot_peek_binary_changes`
//! and moved on with `pg_replication_slot_advance` only after the rows were acknowledged.
//!
//! Each round:
//! 1. `X = pg_current_wal_lsn()`, read *before* peeking;
//! 2. peek the changes of transactions committed before `X` (at most about `batch` rows,
//!    whole transactions) and decode the `seq` of every inserted outbox row, in commit order;
//! 3. the relay loads those rows from the table (dropping rows already published), publishes
//!    and acknowledges them;
//! 4. advance the slot: to `X` when the peek was not cut short — so an idle database, or one
//!    busy only with other tables or databases, never makes the slot hold WAL back (this is
//!    the heartbeat) — else to the end of the last transaction read.
//!
//! A transaction committing after `X` is not in this round's peek and is not passed by the
//! advance (its commit record lies after `X`), so no committed row is ever skipped.
//!
//! Rows committed before the slot existed are not in it: when the relay (re)connects it first
//! drains unpublished rows by polling; rows seen both ways are published once, because a
//! row loaded for publishing must still be unpublished in the table.

use std::collections::HashMap;

use sqlx::{AnyPool, Row as _};
use tracing::info;

use crate::config::SourceConfig;
use crate::table::Table;
use crate::{Error, Result};

/// A prepared slot and publication.
#[derive(Debug, Clone)]
pub(crate) struct Slot {
    slot: String,
    publication: String,
    relname: String,
}

/// One peek: the `seq`s in commit order, and where the slot may go once they are handled.
#[derive(Debug)]
pub(crate) struct Batch {
    pub(crate) seqs: Vec<i64>,
    pub(crate) advance_to: String,
}

impl Slot {
    /// Checks `wal_level`, creates the publication and the slot when missing.
    pub(crate) async fn ensure(pool: &AnyPool, cfg: &SourceConfig, table: &Table) -> Result<Slot> {
        let level: String = sqlx::query("SELECT current_setting('wal_level') AS l")
            .fetch_one(pool)
            .await?
            .try_get("l")?;
        if level != "logical" {
            return Err(Error::Logical(format!(
                "wal_level is {level}; mode = \"logical\" needs wal_level = logical \
                 (postgresql.conf, then restart), or use mode = \"polling\""
            )));
        }
        let slot = cfg.slot_name();
        let publication = cfg.publication_name();
        let n: i64 = sqlx::query("SELECT COUNT(*) AS n FROM pg_publication WHERE pubname = $1")
            .bind(&publication)
            .fetch_one(pool)
            .await?
            .try_get("n")?;
        if n == 0 {
            // Names were validated (letters, digits, _), the table too.
            let sql = format!(
                "CREATE PUBLICATION {publication} FOR TABLE {} WITH (publish = 'insert')",
                table.name()
            );
            sqlx::query(&sql).execute(pool).await?;
            info!(publication, table = table.name(), "publication created");
        }
        let n: i64 =
            sqlx::query("SELECT COUNT(*) AS n FROM pg_replication_slots WHERE slot_name = $1")
                .bind(&slot)
                .fetch_one(pool)
                .await?
                .try_get("n")?;
        if n == 0 {
            sqlx::query("SELECT 1 FROM pg_create_logical_replication_slot($1, 'pgoutput')")
                .bind(&slot)
                .execute(pool)
                .await?;
            info!(slot, "logical replication slot created");
        }
        let relname = table
            .name()
            .rsplit('.')
            .next()
            .unwrap_or(table.name())
            .to_owned();
        Ok(Slot {
            slot,
            publication,
            relname,
        })
    }

    pub(crate) async fn peek(&self, pool: &AnyPool, batch: usize) -> Result<Batch> {
        let upto: String = sqlx::query("SELECT CAST(pg_current_wal_lsn() AS TEXT) AS x")
            .fetch_one(pool)
            .await?
            .try_get("x")?;
        let limit = i64::try_from(batch).unwrap_or(i64::MAX);
        let rows = sqlx::query(
            "SELECT data FROM pg_logical_slot_peek_binary_changes($1, CAST($2 AS pg_lsn), \
             CAST($3 AS INTEGER), 'proto_version', '1', 'publication_names', $4)",
        )
        .bind(&self.slot)
        .bind(&upto)
        .bind(limit)
        .bind(&self.publication)
        .fetch_all(pool)
        .await?;
        let mut decoder = Decoder::new(&self.relname);
        for row in &rows {
            let data: Vec<u8> = row.try_get("data")?;
            decoder.message(&data)?;
        }
        let cut_short = rows.len() as i64 >= limit;
        let advance_to = match (cut_short, decoder.last_commit_end) {
            (true, Some(end)) => lsn_text(end),
            _ => upto,
        };
        Ok(Batch {
            seqs: decoder.seqs,
            advance_to,
        })
    }

    pub(crate) async fn advance(&self, pool: &AnyPool, to: &str) -> Result<()> {
        sqlx::query("SELECT 1 FROM pg_replication_slot_advance($1, CAST($2 AS pg_lsn))")
            .bind(&self.slot)
            .bind(to)
            .execute(pool)
            .await?;
        Ok(())
    }

    /// WAL bytes the slot holds back.
    pub(crate) async fn lag_bytes(&self, pool: &AnyPool) -> Result<i64> {
        let lag: Option<i64> = sqlx::query(
            "SELECT CAST(pg_wal_lsn_diff(pg_current_wal_lsn(), confirmed_flush_lsn) AS BIGINT) \
             AS lag FROM pg_replication_slots WHERE slot_name = $1",
        )
        .bind(&self.slot)
        .fetch_one(pool)
        .await?
        .try_get("lag")?;
        Ok(lag.unwrap_or(0))
    }
}

/// `X/Y` text form of an LSN.
fn lsn_text(lsn: u64) -> String {
    format!("{:X}/{:X}", lsn >> 32, lsn & 0xffff_ffff)
}

/// Decodes pgoutput protocol version 1 messages, keeping the `seq` of inserted outbox rows.
pub(crate) struct Decoder {
    relname: String,
    /// Relation id → position of the `seq` column, for relations named like the table.
    relations: HashMap<u32, usize>,
    pub(crate) seqs: Vec<i64>,
    pub(crate) last_commit_end: Option<u64>,
}

struct Cursor<'a> {
    data: &'a [u8],
    pos: usize,
}

impl<'a> Cursor<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8]> {
        let end = self
            .pos
            .checked_add(n)
            .filter(|&e| e <= self.data.len())
            .ok_or_else(|| Error::Logical("truncated pgoutput message".into()))?;
        let s = &self.data[self.pos..end];
        self.pos = end;
        Ok(s)
    }
    fn u8(&mut self) -> Result<u8> {
        Ok(self.take(1)?[0])
    }
    fn u16(&mut self) -> Result<u16> {
        let b = self.take(2)?;
        Ok(u16::from_be_bytes([b[0], b[1]]))
    }
    fn u32(&mut self) -> Result<u32> {
        let b = self.take(4)?;
        Ok(u32::from_be_bytes([b[0], b[1], b[2], b[3]]))
    }
    fn u64(&mut self) -> Result<u64> {
        let b = self.take(8)?;
        let mut a = [0u8; 8];
        a.copy_from_slice(b);
        Ok(u64::from_be_bytes(a))
    }
    fn cstr(&mut self) -> Result<&'a str> {
        let rest = &self.data[self.pos..];
        let nul = rest
            .iter()
            .position(|&b| b == 0)
            .ok_or_else(|| Error::Logical("unterminated string in pgoutput message".into()))?;
        let s = std::str::from_utf8(&rest[..nul])
            .map_err(|_| Error::Logical("non-UTF-8 name in pgoutput message".into()))?;
        self.pos += nul + 1;
        Ok(s)
    }
}

impl Decoder {
    pub(crate) fn new(relname: &str) -> Decoder {
        Decoder {
            relname: relname.to_owned(),
            relations: HashMap::new(),
            seqs: Vec::new(),
            last_commit_end: None,
        }
    }

    pub(crate) fn message(&mut self, data: &[u8]) -> Result<()> {
        let mut c = Cursor { data, pos: 0 };
        match c.u8()? {
            b'R' => {
                let relid = c.u32()?;
                let _namespace = c.cstr()?;
                let name = c.cstr()?;
                let _identity = c.u8()?;
                let ncols = c.u16()?;
                let mut seq_at = None;
                for i in 0..usize::from(ncols) {
                    let _flags = c.u8()?;
                    let col = c.cstr()?;
                    let _oid = c.u32()?;
                    let _typmod = c.u32()?;
                    if col == "seq" {
                        seq_at = Some(i);
                    }
                }
                match (name == self.relname, seq_at) {
                    (true, Some(at)) => {
                        self.relations.insert(relid, at);
                    }
                    (true, None) => {
                        return Err(Error::Logical(format!(
                            "table {name} has no seq column; was it created by weft outbox init?"
                        )));
                    }
                    _ => {}
                }
            }
            b'I' => {
                let relid = c.u32()?;
                let Some(&seq_at) = self.relations.get(&relid) else {
                    return Ok(());
                };
                if c.u8()? != b'N' {
                    return Err(Error::Logical("insert without a new tuple".into()));
                }
                let ncols = c.u16()?;
                for i in 0..usize::from(ncols) {
                    match c.u8()? {
                        b'n' | b'u' => {
                            if i == seq_at {
                                return Err(Error::Logical("inserted row has no seq".into()));
                            }
                        }
                        b't' | b'b' => {
                            let len = c.u32()? as usize;
                            let value = c.take(len)?;
                            if i == seq_at {
                                let seq = std::str::from_utf8(value)
                                    .ok()
                                    .and_then(|s| s.parse().ok())
                                    .ok_or_else(|| {
                                        Error::Logical("seq is not an integer".into())
                                    })?;
                                self.seqs.push(seq);
                            }
                        }
                        other => {
                            return Err(Error::Logical(format!(
                                "unknown tuple column kind {other:#x}"
                            )));
                        }
                    }
                }
            }
            b'C' => {
                let _flags = c.u8()?;
                let _commit = c.u64()?;
                self.last_commit_end = Some(c.u64()?);
            }
            // Begin, origin, type, update, delete, truncate, message: nothing to keep.
            _ => {}
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn relation(relid: u32, name: &str, cols: &[&str]) -> Vec<u8> {
        let mut m = vec![b'R'];
        m.extend(relid.to_be_bytes());
        m.extend(b"public\0");
        m.extend(name.as_bytes());
        m.push(0);
        m.push(b'd');
        m.extend((cols.len() as u16).to_be_bytes());
        for c in cols {
            m.push(0);
            m.extend(c.as_bytes());
            m.push(0);
            m.extend(20u32.to_be_bytes());
            m.extend(u32::MAX.to_be_bytes());
        }
        m
    }

    fn insert(relid: u32, values: &[Option<&str>]) -> Vec<u8> {
        let mut m = vec![b'I'];
        m.extend(relid.to_be_bytes());
        m.push(b'N');
        m.extend((values.len() as u16).to_be_bytes());
        for v in values {
            match v {
                None => m.push(b'n'),
                Some(v) => {
                    m.push(b't');
                    m.extend((v.len() as u32).to_be_bytes());
                    m.extend(v.as_bytes());
                }
            }
        }
        m
    }

    #[test]
    fn decodes_inserts_of_the_table() {
        let mut d = Decoder::new("weft_outbox");
        let mut commit = vec![b'C', 0];
        commit.extend(0x1_0000_0010u64.to_be_bytes());
        commit.extend(0x1_0000_0020u64.to_be_bytes());
        commit.extend(0u64.to_be_bytes());
        let messages = [
            vec![b'B'; 21],
            relation(1, "weft_outbox", &["seq", "id", "payload"]),
            relation(2, "other", &["seq"]),
            insert(1, &[Some("41"), Some("a"), None]),
            insert(2, &[Some("99")]),
            insert(1, &[Some("42"), Some("b"), Some("\\x00")]),
            commit,
        ];
        for m in &messages {
            d.message(m).expect("decodes");
        }
        assert_eq!(d.seqs, vec![41, 42]);
        assert_eq!(d.last_commit_end.map(lsn_text).as_deref(), Some("1/20"));
    }

    #[test]
    fn refuses_malformed_messages() {
        let mut d = Decoder::new("weft_outbox");
        d.message(&relation(1, "weft_outbox", &["seq"]))
            .expect("relation");
        let cases: Vec<Vec<u8>> = vec![
            vec![b'I', 0, 0, 0, 1],
            insert(1, &[Some("x")]),
            insert(1, &[None]),
            {
                let mut m = insert(1, &[Some("1")]);
                m.truncate(m.len() - 1);
                m
            },
            relation(3, "weft_outbox", &["id"]),
            vec![b'R', 0, 0, 0, 1, b'p'],
        ];
        for m in cases {
            assert!(d.message(&m).is_err(), "{m:?}");
        }
    }
}
