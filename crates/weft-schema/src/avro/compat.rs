//! The Avro specification's schema resolution rules as a checker that says why not.
//!
//! Mirrors what Confluent's registry answers (it runs Java's `SchemaCompatibility`):
//! named types match by unqualified name or by a reader alias equal to the writer's full
//! name; logical types are ignored (their underlying types must resolve); a writer union
//! is read branch by branch; recursive types are checked once per (reader, writer) pair.

use std::collections::HashMap;

use crate::Incompatibility;

use super::model::{Model, NamedKind, Node, Primitive};

pub(crate) const READER_FIELD_MISSING_DEFAULT_VALUE: &str = "READER_FIELD_MISSING_DEFAULT_VALUE";
pub(crate) const TYPE_MISMATCH: &str = "TYPE_MISMATCH";
pub(crate) const MISSING_ENUM_SYMBOLS: &str = "MISSING_ENUM_SYMBOLS";
pub(crate) const MISSING_UNION_BRANCH: &str = "MISSING_UNION_BRANCH";
pub(crate) const NAME_MISMATCH: &str = "NAME_MISMATCH";
pub(crate) const FIXED_SIZE_MISMATCH: &str = "FIXED_SIZE_MISMATCH";

/// A reason with its location relative to the node being checked.
#[derive(Debug, Clone)]
struct Reason {
    kind: &'static str,
    /// Path segments from the checked node down, e.g. `["fields", "2", "type"]`.
    path: Vec<String>,
    message: String,
}

pub(crate) fn can_read(reader: &Model, writer: &Model) -> Vec<Incompatibility> {
    let mut checker = Checker {
        reader,
        writer,
        memo: HashMap::new(),
    };
    checker
        .check(&reader.root, &writer.root, "the schema")
        .into_iter()
        .map(|r| Incompatibility {
            kind: r.kind,
            location: format!("/{}", r.path.join("/")),
            message: r.message,
        })
        .collect()
}

enum Memo {
    InProgress,
    Done(Vec<Reason>),
}

struct Checker<'a> {
    reader: &'a Model,
    writer: &'a Model,
    /// Named (reader, writer) pairs being checked or checked. A pair met again while in
    /// progress is assumed to resolve (the recursion's other steps are checked anyway).
    memo: HashMap<(usize, usize), Memo>,
}

/// The shape of a node once named types are looked up and logical types set aside.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Shape {
    Primitive(Primitive),
    Array,
    Map,
    Union,
    Record,
    Enum,
    Fixed,
}

fn shape(model: &Model, node: &Node) -> Shape {
    match node {
        Node::Primitive { kind, .. } => Shape::Primitive(*kind),
        Node::Array { .. } => Shape::Array,
        Node::Map { .. } => Shape::Map,
        Node::Union(_) => Shape::Union,
        Node::Named(i) => match model.named[*i].kind {
            NamedKind::Record(_) => Shape::Record,
            NamedKind::Enum { .. } => Shape::Enum,
            NamedKind::Fixed(_) => Shape::Fixed,
        },
    }
}

fn prefixed(prefix: &[&str], reasons: Vec<Reason>) -> Vec<Reason> {
    reasons
        .into_iter()
        .map(|mut r| {
            let mut path: Vec<String> = prefix.iter().map(|s| (*s).to_owned()).collect();
            path.append(&mut r.path);
            r.path = path;
            r
        })
        .collect()
}

impl Checker<'_> {
    /// Why `r` (reader) cannot read what `w` (writer) wrote. `what` names the element for
    /// messages: `the schema`, `field 'Order.total'`, `items of field 'Order.lines'`.
    fn check(&mut self, r: &Node, w: &Node, what: &str) -> Vec<Reason> {
        let (rs, ws) = (shape(self.reader, r), shape(self.writer, w));
        if rs == ws {
            return match (r, w) {
                (Node::Array { items: ri, .. }, Node::Array { items: wi, .. }) => {
                    let inner = self.check(ri, wi, &format!("items of {what}"));
                    prefixed(&["items"], inner)
                }
                (Node::Map { values: rv, .. }, Node::Map { values: wv, .. }) => {
                    let inner = self.check(rv, wv, &format!("values of {what}"));
                    prefixed(&["values"], inner)
                }
                (Node::Union(_), Node::Union(wb)) => {
                    let mut out = Vec::new();
                    for (i, b) in wb.iter().enumerate() {
                        if !self.check(r, b, what).is_empty() {
                            out.push(Reason {
                                kind: MISSING_UNION_BRANCH,
                                path: vec![i.to_string()],
                                message: format!(
                                    "{what}: the reader's union has no branch that reads the writer's branch {i} ({})",
                                    self.writer.describe(b)
                                ),
                            });
                        }
                    }
                    out
                }
                (Node::Named(ri), Node::Named(wi)) => self.named(*ri, *wi, what),
                _ => Vec::new(), // same primitive
            };
        }
        if let Node::Union(wb) = w {
            // Every branch the writer may have chosen must be readable.
            let mut out = Vec::new();
            for (i, b) in wb.iter().enumerate() {
                let inner = self.check(r, b, what);
                out.extend(prefixed(&[&i.to_string()], inner));
            }
            return out;
        }
        if let Node::Union(rb) = r {
            if rb.iter().any(|b| self.check(b, w, what).is_empty()) {
                return Vec::new();
            }
            return vec![Reason {
                kind: MISSING_UNION_BRANCH,
                path: Vec::new(),
                message: format!(
                    "{what}: the reader's union has no branch that reads the writer's {}",
                    self.writer.describe(w)
                ),
            }];
        }
        let promotable = matches!(
            (rs, ws),
            (
                Shape::Primitive(Primitive::Long),
                Shape::Primitive(Primitive::Int)
            ) | (
                Shape::Primitive(Primitive::Float),
                Shape::Primitive(Primitive::Int | Primitive::Long)
            ) | (
                Shape::Primitive(Primitive::Double),
                Shape::Primitive(Primitive::Int | Primitive::Long | Primitive::Float)
            ) | (
                Shape::Primitive(Primitive::Bytes),
                Shape::Primitive(Primitive::String)
            ) | (
                Shape::Primitive(Primitive::String),
                Shape::Primitive(Primitive::Bytes)
            )
        );
        if promotable {
            return Vec::new();
        }
        vec![Reason {
            kind: TYPE_MISMATCH,
            path: Vec::new(),
            message: format!(
                "{what}: the reader's {} cannot read the writer's {}",
                self.reader.describe(r),
                self.writer.describe(w)
            ),
        }]
    }

    fn named(&mut self, ri: usize, wi: usize, what: &str) -> Vec<Reason> {
        // Enums and fixed are leaves: checked afresh, so messages name the field at hand.
        if !matches!(self.reader.named[ri].kind, NamedKind::Record(_)) {
            return self.named_uncached(ri, wi, what);
        }
        match self.memo.get(&(ri, wi)) {
            Some(Memo::InProgress) => return Vec::new(),
            Some(Memo::Done(reasons)) => return reasons.clone(),
            None => {}
        }
        self.memo.insert((ri, wi), Memo::InProgress);
        let reasons = self.named_uncached(ri, wi, what);
        self.memo.insert((ri, wi), Memo::Done(reasons.clone()));
        reasons
    }

    fn named_uncached(&mut self, ri: usize, wi: usize, what: &str) -> Vec<Reason> {
        let (reader, writer) = (self.reader, self.writer);
        let (rn, wn) = (&reader.named[ri], &writer.named[wi]);
        let mut out = Vec::new();
        let writer_full = wn.name.full();
        let same_name =
            rn.name.name == wn.name.name || rn.aliases.iter().any(|a| a.full() == writer_full);
        if !same_name {
            out.push(Reason {
                kind: NAME_MISMATCH,
                path: vec!["name".to_owned()],
                message: format!(
                    "{what}: the reader's {} {} is not named like the writer's {} (and has no alias {})",
                    rn.kind.type_name(),
                    rn.name.full(),
                    writer_full,
                    writer_full
                ),
            });
        }
        match (&rn.kind, &wn.kind) {
            (NamedKind::Fixed(rs), NamedKind::Fixed(ws)) if rs != ws => {
                out.push(Reason {
                    kind: FIXED_SIZE_MISMATCH,
                    path: vec!["size".to_owned()],
                    message: format!(
                        "{what}: fixed {} has size {rs} in the reader but {ws} in the writer",
                        rn.name.full()
                    ),
                });
            }
            (
                NamedKind::Enum {
                    symbols: rsym,
                    default,
                },
                NamedKind::Enum { symbols: wsym, .. },
            ) => {
                let mut missing: Vec<&String> = wsym.iter().filter(|s| !rsym.contains(s)).collect();
                missing.sort();
                if !missing.is_empty() && default.is_none() {
                    let list: Vec<&str> = missing.iter().map(|s| s.as_str()).collect();
                    out.push(Reason {
                        kind: MISSING_ENUM_SYMBOLS,
                        path: vec!["symbols".to_owned()],
                        message: format!(
                            "{what}: the reader's enum {} lacks the writer's symbols [{}] and has no default symbol",
                            rn.name.full(),
                            list.join(", ")
                        ),
                    });
                }
            }
            (NamedKind::Record(rf), NamedKind::Record(wf)) => {
                let record = rn.name.full();
                for (i, f) in rf.iter().enumerate() {
                    let field_what = format!("field '{}.{}'", record, f.name);
                    let found = wf.iter().find(|x| x.name == f.name).or_else(|| {
                        f.aliases
                            .iter()
                            .find_map(|a| wf.iter().find(|x| &x.name == a))
                    });
                    match found {
                        Some(wfield) => {
                            let inner = self.check(&f.schema, &wfield.schema, &field_what);
                            out.extend(prefixed(&["fields", &i.to_string(), "type"], inner));
                        }
                        None if f.default.is_some() => {}
                        None => out.push(Reason {
                            kind: READER_FIELD_MISSING_DEFAULT_VALUE,
                            path: vec!["fields".to_owned(), i.to_string()],
                            message: format!(
                                "{field_what} is missing from the writer's schema and has no default value in the reader's"
                            ),
                        }),
                    }
                }
            }
            _ => {} // different kinds never reach here: shapes were equal
        }
        out
    }
}
