//! Committed offsets, persisted in `<state_dir>/offsets.v1`.
//!
//! Why a state file and not an internal compacted topic (Kafka's `__consumer_offsets`):
//! it is the broker's existing persistence mechanism (versioned text, replaced atomically
//! by `store::write_atomic`: temp file, fsync, rename, fsync dir), so a commit is durable
//! before it is acknowledged and a crash leaves either the old or the new file. The cost is
//! that every commit rewrites all offsets, which is fine for thousands of partitions, not
//! for millions; moving to a log partition is issue 4's later work.
//!
//! Format (version 1), after the `weft-broker offsets 1` header, one line per partition:
//! `<group> <topic> <partition> <offset> <leader epoch> <commit time ms> <metadata>`, where
//! group, topic and metadata are lowercase hex of their UTF-8 bytes (metadata `-` when
//! empty), then `end`.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use crate::error::{Error, Result};
use crate::store::{header, read_state_file, write_atomic};

/// `offset.metadata.max.bytes`.
pub(crate) const MAX_METADATA_BYTES: usize = 4096;

#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Committed {
    pub(crate) offset: i64,
    pub(crate) leader_epoch: i32,
    pub(crate) metadata: String,
    pub(crate) commit_ms: i64,
}

type GroupOffsets = BTreeMap<(String, i32), Committed>;

pub(crate) struct Offsets {
    path: PathBuf,
    groups: BTreeMap<String, GroupOffsets>,
}

const KIND: &str = "offsets";
const VERSION: u32 = 1;

fn hex(s: &str) -> String {
    if s.is_empty() {
        return "-".to_owned();
    }
    s.bytes().map(|b| format!("{b:02x}")).collect()
}

fn unhex(s: &str) -> Option<String> {
    if s == "-" {
        return Some(String::new());
    }
    if !s.len().is_multiple_of(2) {
        return None;
    }
    let bytes: Option<Vec<u8>> = (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(s.get(i..i + 2)?, 16).ok())
        .collect();
    String::from_utf8(bytes?).ok()
}

impl Offsets {
    /// Loads `offsets.v1` from `dir` (empty when absent).
    pub(crate) fn open(dir: &Path) -> Result<Offsets> {
        let path = dir.join("offsets.v1");
        let mut groups: BTreeMap<String, GroupOffsets> = BTreeMap::new();
        if let Some(lines) = read_state_file(&path, KIND, VERSION)? {
            for (n, line) in lines.iter().enumerate() {
                let corrupt = || Error::Corrupt {
                    path: path.clone(),
                    reason: format!("bad offset line {}", n + 2),
                };
                let f: Vec<&str> = line.split(' ').collect();
                let [g, t, p, o, e, ts, m] = f.as_slice() else {
                    return Err(corrupt());
                };
                let group = unhex(g).ok_or_else(corrupt)?;
                let topic = unhex(t).ok_or_else(corrupt)?;
                let c = Committed {
                    offset: o.parse().map_err(|_| corrupt())?,
                    leader_epoch: e.parse().map_err(|_| corrupt())?,
                    commit_ms: ts.parse().map_err(|_| corrupt())?,
                    metadata: unhex(m).ok_or_else(corrupt)?,
                };
                let partition = p.parse().map_err(|_| corrupt())?;
                groups
                    .entry(group)
                    .or_default()
                    .insert((topic, partition), c);
            }
        }
        Ok(Offsets { path, groups })
    }

    fn render(groups: &BTreeMap<String, GroupOffsets>) -> String {
        let mut out = header(KIND, VERSION);
        for (g, offsets) in groups {
            for ((t, p), c) in offsets {
                out.push_str(&format!(
                    "{} {} {p} {} {} {} {}\n",
                    hex(g),
                    hex(t),
                    c.offset,
                    c.leader_epoch,
                    c.commit_ms,
                    hex(&c.metadata)
                ));
            }
        }
        out.push_str("end\n");
        out
    }

    /// Stores `commits` of `group` durably: the file is written before memory changes, so a
    /// failed write leaves both as they were.
    pub(crate) fn commit(
        &mut self,
        group: &str,
        commits: impl IntoIterator<Item = ((String, i32), Committed)>,
    ) -> Result<()> {
        let mut next = self.groups.clone();
        let entry = next.entry(group.to_owned()).or_default();
        for (tp, c) in commits {
            entry.insert(tp, c);
        }
        write_atomic(&self.path, &Self::render(&next))?;
        self.groups = next;
        Ok(())
    }

    /// Forgets committed offsets of `group` durably: the given partitions, or all of them
    /// (`None`, DeleteGroups). Like [`Offsets::commit`], memory changes only after the write.
    pub(crate) fn delete(
        &mut self,
        group: &str,
        partitions: Option<&[(String, i32)]>,
    ) -> Result<()> {
        let mut next = self.groups.clone();
        match partitions {
            None => {
                next.remove(group);
            }
            Some(ps) => {
                if let Some(g) = next.get_mut(group) {
                    for tp in ps {
                        g.remove(tp);
                    }
                    if g.is_empty() {
                        next.remove(group);
                    }
                }
            }
        }
        if next == self.groups {
            return Ok(());
        }
        write_atomic(&self.path, &Self::render(&next))?;
        self.groups = next;
        Ok(())
    }

    pub(crate) fn has_group(&self, group: &str) -> bool {
        self.groups.contains_key(group)
    }

    pub(crate) fn get(&self, group: &str, topic: &str, partition: i32) -> Option<&Committed> {
        self.groups.get(group)?.get(&(topic.to_owned(), partition))
    }

    /// Every committed offset of `group`, ordered by topic and partition.
    pub(crate) fn all(&self, group: &str) -> Vec<(&str, i32, &Committed)> {
        self.groups
            .get(group)
            .map(|g| g.iter().map(|((t, p), c)| (t.as_str(), *p, c)).collect())
            .unwrap_or_default()
    }

    /// Groups with committed offsets.
    pub(crate) fn groups(&self) -> impl Iterator<Item = &str> {
        self.groups.keys().map(String::as_str)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn c(offset: i64, metadata: &str) -> Committed {
        Committed {
            offset,
            leader_epoch: -1,
            metadata: metadata.to_owned(),
            commit_ms: 1_700_000_000_000,
        }
    }

    #[test]
    fn offsets_survive_reopen_with_odd_names_and_metadata() {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut o = Offsets::open(dir.path()).expect("open");
        o.commit(
            "my group ü",
            [
                (("t.1".to_owned(), 0), c(5, "")),
                (("t.1".to_owned(), 3), c(7, "a b\nc")),
            ],
        )
        .expect("commit");
        o.commit("g2", [(("x".to_owned(), 1), c(1, "m"))])
            .expect("commit");
        o.commit("g2", [(("x".to_owned(), 1), c(9, "m2"))])
            .expect("commit");
        let r = Offsets::open(dir.path()).expect("reopen");
        assert_eq!(r.get("my group ü", "t.1", 0), Some(&c(5, "")));
        assert_eq!(r.get("my group ü", "t.1", 3), Some(&c(7, "a b\nc")));
        assert_eq!(r.get("g2", "x", 1), Some(&c(9, "m2")));
        assert_eq!(r.get("g2", "x", 2), None);
        assert_eq!(r.all("my group ü").len(), 2);
        assert_eq!(r.groups().collect::<Vec<_>>(), vec!["g2", "my group ü"]);
    }

    #[test]
    fn deleted_offsets_stay_deleted_after_reopen() {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut o = Offsets::open(dir.path()).expect("open");
        let tp = |t: &str, p| (t.to_owned(), p);
        o.commit("a", [(tp("t", 0), c(1, "")), (tp("t", 1), c(2, ""))])
            .expect("commit");
        o.commit("b", [(tp("t", 0), c(3, ""))]).expect("commit");
        o.delete("a", Some(&[tp("t", 1), tp("u", 9)]))
            .expect("delete");
        o.delete("b", Some(&[tp("t", 0)])).expect("delete");
        let r = Offsets::open(dir.path()).expect("reopen");
        assert_eq!(r.get("a", "t", 0), Some(&c(1, "")));
        assert_eq!(r.get("a", "t", 1), None);
        assert!(!r.has_group("b"), "a group without offsets is gone");
        o.delete("a", None).expect("delete group");
        assert!(!Offsets::open(dir.path()).expect("reopen").has_group("a"));
    }

    #[test]
    fn golden_v1_file_reads() {
        let dir = tempfile::tempdir().expect("tempdir");
        std::fs::write(
            dir.path().join("offsets.v1"),
            "weft-broker offsets 1\n67 74 2 42 3 1700000000000 6d\nend\n",
        )
        .expect("write");
        let o = Offsets::open(dir.path()).expect("open");
        assert_eq!(
            o.get("g", "t", 2),
            Some(&Committed {
                offset: 42,
                leader_epoch: 3,
                metadata: "m".into(),
                commit_ms: 1_700_000_000_000
            })
        );
    }

    #[test]
    fn truncated_or_garbled_files_are_refused() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("offsets.v1");
        for bad in [
            "weft-broker offsets 1\n67 74 2 42 3 1 -\n",
            "weft-broker offsets 1\n67 74 2 x 3 1 -\nend\n",
            "weft-broker offsets 1\n6 74 2 1 3 1 -\nend\n",
        ] {
            std::fs::write(&path, bad).expect("write");
            assert!(Offsets::open(dir.path()).is_err(), "{bad:?}");
        }
    }
}
