//! Payload validation: a walk over one binary-encoded Avro datum that allocates nothing.
//!
//! It checks what Java's `GenericDatumReader` checks — every length fits in the bytes left,
//! union and enum indexes are in range, booleans are 0 or 1, varints end, strings and map
//! keys are UTF-8, nothing trails the datum — plus two bounds of its own: collections hold
//! at most one element per payload byte plus [`EXTRA_ITEMS`] in total (elements of
//! zero-size types such as `null` cost no bytes, so bytes alone do not bound them), and
//! nesting stays under [`MAX_DEPTH`] (a schema like `record A { A a; }` has no finite datum).
//!
//! Why not apache-avro's decoder (0.22): it allocates what a length claims before reading
//! (`vec![0; len]`, and a fixed's size unchecked), reads a string or boolean cut short by the
//! end of the data as `null` without an error, recurses without a limit, and needs about
//! 100 KiB of stack per nesting level in debug builds (10 in release): a 20-level datum
//! overflows a 2 MiB thread stack and aborts the process. It also builds a value tree we
//! would throw away. The tests compare this walk with it on mutated datums.

use super::model::{Model, NamedKind, Node, Primitive};

/// The deepest nesting of records, arrays, maps and unions a datum may have.
pub(crate) const MAX_DEPTH: usize = 128;

/// Elements (array items and map entries, all collections together) a datum may hold
/// beyond one per payload byte.
pub(crate) const EXTRA_ITEMS: usize = 65_536;

pub(crate) fn walk(model: &Model, payload: &[u8]) -> Result<(), String> {
    let mut w = Walker {
        model,
        buf: payload,
        pos: 0,
        items_left: payload.len().saturating_add(EXTRA_ITEMS),
    };
    w.node(&model.root, "", 0)?;
    if w.pos != payload.len() {
        return Err(format!(
            "{} trailing bytes after the datum (it ends at byte {} of {})",
            payload.len() - w.pos,
            w.pos,
            payload.len()
        ));
    }
    Ok(())
}

struct Walker<'a> {
    model: &'a Model,
    buf: &'a [u8],
    pos: usize,
    items_left: usize,
}

impl Walker<'_> {
    fn left(&self) -> usize {
        self.buf.len() - self.pos
    }

    fn take(&mut self, n: usize, what: &str, at: &str) -> Result<&[u8], String> {
        if n > self.left() {
            return Err(format!(
                "{} claims {n} bytes but only {} remain (at byte {})",
                describe(what, at),
                self.left(),
                self.pos
            ));
        }
        let s = &self.buf[self.pos..self.pos + n];
        self.pos += n;
        Ok(s)
    }

    fn long(&mut self, at: &str) -> Result<i64, String> {
        let mut value: u64 = 0;
        for i in 0..10 {
            let Some(&b) = self.buf.get(self.pos) else {
                return Err(format!(
                    "{}: the data ends inside a varint",
                    describe("value", at)
                ));
            };
            self.pos += 1;
            value |= u64::from(b & 0x7f) << (7 * i);
            if b & 0x80 == 0 {
                return Ok(((value >> 1) as i64) ^ -((value & 1) as i64));
            }
        }
        Err(format!(
            "{}: varint longer than 10 bytes",
            describe("value", at)
        ))
    }

    fn int(&mut self, at: &str) -> Result<i32, String> {
        let v = self.long(at)?;
        i32::try_from(v).map_err(|_| format!("{}: {v} does not fit an int", describe("value", at)))
    }

    fn len(&mut self, what: &str, at: &str) -> Result<usize, String> {
        let n = self.long(at)?;
        usize::try_from(n).map_err(|_| format!("{} has negative length {n}", describe(what, at)))
    }

    fn node(&mut self, node: &Node, at: &str, depth: usize) -> Result<(), String> {
        if depth > MAX_DEPTH {
            return Err(format!(
                "{}: nested deeper than {MAX_DEPTH} levels",
                describe("value", at)
            ));
        }
        match node {
            Node::Primitive { kind, .. } => match kind {
                Primitive::Null => Ok(()),
                Primitive::Boolean => match self.take(1, "boolean", at)? {
                    [0 | 1] => Ok(()),
                    [b] => Err(format!(
                        "{}: byte {b} is neither 0 nor 1",
                        describe("boolean", at)
                    )),
                    _ => Ok(()),
                },
                Primitive::Int => self.int(at).map(drop),
                Primitive::Long => self.long(at).map(drop),
                Primitive::Float => self.take(4, "float", at).map(drop),
                Primitive::Double => self.take(8, "double", at).map(drop),
                Primitive::Bytes => {
                    let n = self.len("bytes", at)?;
                    self.take(n, "bytes", at).map(drop)
                }
                Primitive::String => {
                    let n = self.len("string", at)?;
                    let s = self.take(n, "string", at)?;
                    std::str::from_utf8(s)
                        .map(drop)
                        .map_err(|e| format!("{}: not UTF-8 ({e})", describe("string", at)))
                }
            },
            Node::Array { items, .. } => {
                self.blocks(at, |w, i| w.node(items, &format!("{at}/{i}"), depth + 1))
            }
            Node::Map { values, .. } => self.blocks(at, |w, i| {
                let key_at = format!("{at}/{i}");
                let n = w.len("map key", &key_at)?;
                let key = w.take(n, "map key", &key_at)?;
                std::str::from_utf8(key)
                    .map_err(|e| format!("{}: not UTF-8 ({e})", describe("map key", &key_at)))?;
                w.node(values, &key_at, depth + 1)
            }),
            Node::Union(branches) => {
                let i = self.long(at)?;
                let branch = usize::try_from(i)
                    .ok()
                    .and_then(|i| branches.get(i))
                    .ok_or_else(|| {
                        format!(
                            "{}: branch {i} of a {}-branch union",
                            describe("union", at),
                            branches.len()
                        )
                    })?;
                self.node(branch, at, depth + 1)
            }
            Node::Named(n) => {
                let named = &self.model.named[*n];
                match &named.kind {
                    NamedKind::Fixed(size) => self.take(*size, "fixed", at).map(drop),
                    NamedKind::Enum { symbols, .. } => {
                        let i = self.int(at)?;
                        if usize::try_from(i).is_ok_and(|i| i < symbols.len()) {
                            Ok(())
                        } else {
                            Err(format!(
                                "{}: symbol index {i} of an enum with {} symbols",
                                describe("enum", at),
                                symbols.len()
                            ))
                        }
                    }
                    NamedKind::Record(fields) => {
                        for f in fields {
                            self.node(&f.schema, &format!("{at}/{}", f.name), depth + 1)?;
                        }
                        Ok(())
                    }
                }
            }
        }
    }

    /// Array or map blocks: a count (negative: followed by a byte size), items, until 0.
    fn blocks(
        &mut self,
        at: &str,
        mut item: impl FnMut(&mut Self, usize) -> Result<(), String>,
    ) -> Result<(), String> {
        let mut index = 0usize;
        loop {
            let count = self.long(at)?;
            if count == 0 {
                return Ok(());
            }
            if count < 0 {
                let size = self.long(at)?;
                if size < 0 {
                    return Err(format!(
                        "{}: negative block size {size}",
                        describe("collection", at)
                    ));
                }
            }
            let count = count.unsigned_abs();
            let count = usize::try_from(count).unwrap_or(usize::MAX);
            if count > self.items_left {
                return Err(format!(
                    "{}: a block of {count} elements is more than this payload may hold",
                    describe("collection", at)
                ));
            }
            self.items_left -= count;
            for _ in 0..count {
                item(self, index)?;
                index += 1;
            }
        }
    }
}

fn describe(what: &str, at: &str) -> String {
    if at.is_empty() {
        format!("{what} at the root")
    } else {
        format!("{what} at {at}")
    }
}
