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
        path: Vec::new(),
        start: 0,
    };
    w.node(&model.root)?;
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

/// One step of the path to the value being read, rendered only in error messages (the
/// walk runs for every produced record: no allocation per field).
#[derive(Clone, Copy)]
enum Step<'a> {
    Field(&'a str),
    Index(usize),
    /// Counts towards the depth; not shown in the path.
    Branch,
}

struct Walker<'a> {
    model: &'a Model,
    buf: &'a [u8],
    pos: usize,
    items_left: usize,
    path: Vec<Step<'a>>,
    /// Where the value being read begins, for error messages.
    start: usize,
}

impl<'a> Walker<'a> {
    fn left(&self) -> usize {
        self.buf.len() - self.pos
    }

    /// `what at /customer/lines/3 (byte 17)`.
    fn here(&self, what: &str) -> String {
        let mut at = String::new();
        for step in &self.path {
            match step {
                Step::Field(name) => {
                    at.push('/');
                    at.push_str(name);
                }
                Step::Index(i) => at.push_str(&format!("/{i}")),
                Step::Branch => {}
            }
        }
        if at.is_empty() {
            at.push('/');
        }
        format!("{what} at {at} (byte {})", self.start)
    }

    fn take(&mut self, n: usize, what: &str) -> Result<&'a [u8], String> {
        if n > self.left() {
            return Err(format!(
                "{} claims {n} bytes but only {} remain",
                self.here(what),
                self.left()
            ));
        }
        let buf: &'a [u8] = self.buf;
        let s = &buf[self.pos..self.pos + n];
        self.pos += n;
        Ok(s)
    }

    fn long(&mut self, what: &str) -> Result<i64, String> {
        let mut value: u64 = 0;
        for i in 0..10 {
            let Some(&b) = self.buf.get(self.pos) else {
                return Err(format!(
                    "{}: the data ends inside a varint",
                    self.here(what)
                ));
            };
            self.pos += 1;
            value |= u64::from(b & 0x7f) << (7 * i);
            if b & 0x80 == 0 {
                return Ok(((value >> 1) as i64) ^ -((value & 1) as i64));
            }
        }
        Err(format!("{}: varint longer than 10 bytes", self.here(what)))
    }

    fn int(&mut self, what: &str) -> Result<i32, String> {
        let v = self.long(what)?;
        i32::try_from(v).map_err(|_| format!("{}: {v} does not fit an int", self.here(what)))
    }

    fn len(&mut self, what: &str) -> Result<usize, String> {
        let n = self.long(what)?;
        usize::try_from(n).map_err(|_| format!("{} has negative length {n}", self.here(what)))
    }

    fn utf8(&mut self, what: &str) -> Result<(), String> {
        self.start = self.pos;
        let n = self.len(what)?;
        let s = self.take(n, what)?;
        match std::str::from_utf8(s) {
            Ok(_) => Ok(()),
            Err(e) => Err(format!("{}: not UTF-8 ({e})", self.here(what))),
        }
    }

    fn node(&mut self, node: &'a Node) -> Result<(), String> {
        self.start = self.pos;
        if self.path.len() > MAX_DEPTH {
            return Err(format!(
                "{}: nested deeper than {MAX_DEPTH} levels",
                self.here("value")
            ));
        }
        match node {
            Node::Primitive { kind, .. } => match kind {
                Primitive::Null => Ok(()),
                Primitive::Boolean => match self.take(1, "boolean")? {
                    [0 | 1] => Ok(()),
                    [b] => Err(format!(
                        "{}: byte {b} is neither 0 nor 1",
                        self.here("boolean")
                    )),
                    _ => Ok(()),
                },
                Primitive::Int => self.int("int").map(drop),
                Primitive::Long => self.long("long").map(drop),
                Primitive::Float => self.take(4, "float").map(drop),
                Primitive::Double => self.take(8, "double").map(drop),
                Primitive::Bytes => {
                    let n = self.len("bytes")?;
                    self.take(n, "bytes").map(drop)
                }
                Primitive::String => self.utf8("string"),
            },
            Node::Array { items, .. } => self.blocks("array", |w| w.node(items)),
            Node::Map { values, .. } => self.blocks("map", |w| {
                w.utf8("map key")?;
                w.node(values)
            }),
            Node::Union(branches) => {
                let i = self.long("union")?;
                let Some(branch) = usize::try_from(i).ok().and_then(|i| branches.get(i)) else {
                    return Err(format!(
                        "{}: branch {i} of a {}-branch union",
                        self.here("union"),
                        branches.len()
                    ));
                };
                self.path.push(Step::Branch);
                self.node(branch)?;
                self.path.pop();
                Ok(())
            }
            Node::Named(n) => {
                let model: &'a Model = self.model;
                let named = &model.named[*n];
                match &named.kind {
                    NamedKind::Fixed(size) => self.take(*size, "fixed").map(drop),
                    NamedKind::Enum { symbols, .. } => {
                        let i = self.int("enum")?;
                        if usize::try_from(i).is_ok_and(|i| i < symbols.len()) {
                            Ok(())
                        } else {
                            Err(format!(
                                "{}: symbol index {i} of an enum with {} symbols",
                                self.here("enum"),
                                symbols.len()
                            ))
                        }
                    }
                    NamedKind::Record(fields) => {
                        for f in fields {
                            self.path.push(Step::Field(&f.name));
                            self.node(&f.schema)?;
                            self.path.pop();
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
        what: &str,
        mut item: impl FnMut(&mut Self) -> Result<(), String>,
    ) -> Result<(), String> {
        let mut index = 0usize;
        loop {
            self.start = self.pos;
            let count = self.long(what)?;
            if count == 0 {
                return Ok(());
            }
            if count < 0 {
                let size = self.long(what)?;
                if size < 0 {
                    return Err(format!("{}: negative block size {size}", self.here(what)));
                }
            }
            let count = usize::try_from(count.unsigned_abs()).unwrap_or(usize::MAX);
            if count > self.items_left {
                return Err(format!(
                    "{}: a block of {count} elements is more than this payload may hold",
                    self.here(what)
                ));
            }
            self.items_left -= count;
            for _ in 0..count {
                self.path.push(Step::Index(index));
                item(self)?;
                self.path.pop();
                index += 1;
            }
        }
    }
}
