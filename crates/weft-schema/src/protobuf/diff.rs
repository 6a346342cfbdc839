//! Can a reader schema decode what a writer schema wrote? Protobuf's rules are about the
//! wire: fields are matched by number, never by name, and a change is safe when every
//! value the writer can put on the wire still parses as the reader's field.
//!
//! The walk follows Confluent's protobuf diff (writer = "original", reader = "update"), so
//! the verdicts and kinds match what Confluent clients expect; the differences it treats as
//! compatible (fields, messages, enums, enum values and oneofs added or removed, renames,
//! messages reordered) produce nothing here. Where this goes beyond it, it says so:
//! - a singular ↔ repeated change of a *numeric* field is reported for proto3 implicit
//!   fields too (Confluent only compares explicit labels), since a packed repeated field
//!   does not parse as a singular one;
//! - a field that becomes `required` is `REQUIRED_FIELD_ADDED` (the writer may omit it);
//! - message-typed fields are compared by the structure of the type they name, wherever it
//!   is declared (this file or an import), so a change inside an imported message counts.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use prost_reflect::{FieldDescriptor, FileDescriptor, Kind, MessageDescriptor, OneofDescriptor};

use crate::Incompatibility;

pub(super) fn can_read(reader: &FileDescriptor, writer: &FileDescriptor) -> Vec<Incompatibility> {
    let mut ctx = Ctx::default();
    if writer.package_name() != reader.package_name() {
        ctx.push(
            "PACKAGE_CHANGED",
            "#/".to_owned(),
            format!(
                "the package is {:?} in the writer's schema but {:?} in the reader's, so every \
                 message's full name changed",
                writer.package_name(),
                reader.package_name()
            ),
        );
    }
    ctx.compare_types(writer.messages().collect(), reader.messages().collect());
    let mut seen = BTreeSet::new();
    ctx.out
        .retain(|i| seen.insert((i.kind, i.location.clone(), i.message.clone())));
    ctx.out
}

#[derive(Default)]
struct Ctx {
    out: Vec<Incompatibility>,
    /// Message pairs (writer, reader) already compared, with whether they were compatible.
    /// A pair still being compared (a recursive type) counts as compatible.
    compared: HashMap<(String, String), bool>,
    /// How many message-typed fields the walk is inside of; bounded so that a schema
    /// chaining thousands of message types cannot exhaust the stack.
    field_depth: usize,
}

/// Deeper chains of message-typed fields are not followed from the field; the types are
/// still compared where the file declares them.
const MAX_FIELD_DEPTH: usize = 32;

/// Protobuf's groups of scalar types that share an encoding, as the language guide's
/// "updating a message type" section describes them and Confluent groups them. Enums are
/// varints and go with the general numbers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum ScalarGroup {
    Varint,
    Zigzag,
    Fixed32,
    Fixed64,
    Float,
    Double,
    LengthDelimited,
}

fn scalar_group(kind: &Kind) -> Option<ScalarGroup> {
    Some(match kind {
        Kind::Int32 | Kind::Int64 | Kind::Uint32 | Kind::Uint64 | Kind::Bool | Kind::Enum(_) => {
            ScalarGroup::Varint
        }
        Kind::Sint32 | Kind::Sint64 => ScalarGroup::Zigzag,
        Kind::Fixed32 | Kind::Sfixed32 => ScalarGroup::Fixed32,
        Kind::Fixed64 | Kind::Sfixed64 => ScalarGroup::Fixed64,
        Kind::Float => ScalarGroup::Float,
        Kind::Double => ScalarGroup::Double,
        Kind::String | Kind::Bytes => ScalarGroup::LengthDelimited,
        Kind::Message(_) => return None,
    })
}

/// What a field holds, in the terms of the comparison.
enum Shape {
    Scalar(ScalarGroup),
    Message(MessageDescriptor),
    Map(Kind, Kind),
}

impl Shape {
    fn of(field: &FieldDescriptor) -> Shape {
        match field.kind() {
            Kind::Message(m) if m.is_map_entry() => Shape::Map(
                m.map_entry_key_field().kind(),
                m.map_entry_value_field().kind(),
            ),
            kind => Shape::of_kind(&kind),
        }
    }

    fn of_kind(kind: &Kind) -> Shape {
        match kind {
            Kind::Message(m) => Shape::Message(m.clone()),
            other => Shape::Scalar(scalar_group(other).unwrap_or(ScalarGroup::LengthDelimited)),
        }
    }

    fn class(&self) -> &'static str {
        match self {
            Shape::Scalar(_) => "a scalar",
            Shape::Message(_) => "a message",
            Shape::Map(..) => "a map",
        }
    }
}

/// `Order/Line` for `shop.Order.Line` in package `shop`: Confluent's path of a type.
fn local_name(message: &MessageDescriptor) -> String {
    let full = message.full_name();
    let package = message.package_name();
    let local = if package.is_empty() {
        full
    } else {
        full.strip_prefix(package)
            .and_then(|s| s.strip_prefix('.'))
            .unwrap_or(full)
    };
    local.to_owned()
}

fn path(message: &MessageDescriptor) -> String {
    format!("#/{}", local_name(message).replace('.', "/"))
}

fn describe(field: &FieldDescriptor) -> String {
    let label = if field.is_map() {
        ""
    } else if field.is_list() {
        "repeated "
    } else if field.is_required() {
        "required "
    } else {
        ""
    };
    format!("{label}{} `{}`", kind_text(field), field.name())
}

fn kind_text(field: &FieldDescriptor) -> String {
    match field.kind() {
        Kind::Message(m) if m.is_map_entry() => format!(
            "map<{}, {}>",
            kind_name(&m.map_entry_key_field().kind()),
            kind_name(&m.map_entry_value_field().kind())
        ),
        kind => kind_name(&kind),
    }
}

fn kind_name(kind: &Kind) -> String {
    match kind {
        Kind::Message(m) => m.full_name().to_owned(),
        Kind::Enum(e) => format!("enum {}", e.full_name()),
        other => format!("{other:?}").to_lowercase(),
    }
}

impl Ctx {
    fn push(&mut self, kind: &'static str, location: String, message: String) {
        self.out.push(Incompatibility {
            kind,
            location,
            message,
        });
    }

    /// Messages matched by simple name within one scope (the file or one message).
    fn compare_types(&mut self, writer: Vec<MessageDescriptor>, reader: Vec<MessageDescriptor>) {
        let by_name = |list: Vec<MessageDescriptor>| -> BTreeMap<String, MessageDescriptor> {
            list.into_iter()
                .filter(|m| !m.is_map_entry())
                .map(|m| (m.name().to_owned(), m))
                .collect()
        };
        let writer = by_name(writer);
        let reader = by_name(reader);
        for (name, w) in &writer {
            match reader.get(name) {
                None => self.push(
                    "MESSAGE_REMOVED",
                    path(w),
                    format!(
                        "message {} of the writer's schema is missing from the reader's schema",
                        w.full_name()
                    ),
                ),
                Some(r) => {
                    self.compare_message(w, r);
                }
            }
        }
    }

    /// Compares two messages the walk matched; returns whether the reader's can read the
    /// writer's. Each pair is compared (and reported) once.
    fn compare_message(&mut self, w: &MessageDescriptor, r: &MessageDescriptor) -> bool {
        let key = (w.full_name().to_owned(), r.full_name().to_owned());
        if let Some(&ok) = self.compared.get(&key) {
            return ok;
        }
        self.compared.insert(key.clone(), true);
        let before = self.out.len();
        self.compare_fields(w, r);
        let ok = self.out.len() == before;
        self.compared.insert(key, ok);
        self.compare_types(w.child_messages().collect(), r.child_messages().collect());
        ok
    }

    fn compare_fields(&mut self, w: &MessageDescriptor, r: &MessageDescriptor) {
        let at = path(w);
        let real_oneof = |f: &FieldDescriptor| {
            f.containing_oneof()
                .filter(|o: &OneofDescriptor| !o.is_synthetic())
        };
        let mut w_top = BTreeMap::new();
        let mut w_all = BTreeMap::new();
        let mut w_oneof_of = BTreeMap::new();
        for f in w.fields() {
            match real_oneof(&f) {
                Some(o) => {
                    w_oneof_of.insert(f.number(), o.name().to_owned());
                }
                None => {
                    w_top.insert(f.number(), f.clone());
                }
            }
            w_all.insert(f.number(), f);
        }
        let mut r_top = BTreeMap::new();
        let mut r_all = BTreeMap::new();
        let mut r_oneof_of = BTreeMap::new();
        for f in r.fields() {
            match real_oneof(&f) {
                Some(o) => {
                    r_oneof_of.insert(f.number(), o.name().to_owned());
                }
                None => {
                    r_top.insert(f.number(), f.clone());
                }
            }
            r_all.insert(f.number(), f);
        }
        let real_oneofs = |m: &MessageDescriptor| -> BTreeMap<String, OneofDescriptor> {
            m.oneofs()
                .filter(|o| !o.is_synthetic())
                .map(|o| (o.name().to_owned(), o))
                .collect()
        };
        let w_oneofs = real_oneofs(w);
        let r_oneofs = real_oneofs(r);

        // Fields gathered into a reader oneof: a writer may set all of them, the reader keeps
        // only the last one it sees, so at most one existing field may join a oneof, and
        // only a new one.
        for (name, oneof) in &r_oneofs {
            let mut moved = Vec::new();
            let mut existing = 0;
            for f in oneof.fields() {
                if w_top.remove(&f.number()).is_some() {
                    moved.push(f.number());
                } else if w_oneof_of.contains_key(&f.number()) {
                    existing += 1;
                }
            }
            if moved.len() > 1 {
                self.push(
                    "MULTIPLE_FIELDS_MOVED_TO_ONEOF",
                    format!("{at}/{name}"),
                    format!(
                        "fields {moved:?} of {} are independent in the writer's schema but \
                         members of oneof `{name}` in the reader's, which keeps only one of them",
                        w.full_name()
                    ),
                );
            } else if moved.len() == 1 && existing > 0 {
                self.push(
                    "FIELD_MOVED_TO_EXISTING_ONEOF",
                    format!("{at}/{name}"),
                    format!(
                        "field {} of {} joined oneof `{name}`, which already had members in the \
                         writer's schema, so data setting both would lose one",
                        moved[0],
                        w.full_name()
                    ),
                );
            }
        }

        for (name, w_oneof) in &w_oneofs {
            let Some(r_oneof) = r_oneofs.get(name) else {
                continue;
            };
            for wf in w_oneof.fields() {
                match r_oneof.fields().find(|rf| rf.number() == wf.number()) {
                    Some(rf) => self.compare_field(w, &wf, &rf),
                    None if !r_all.contains_key(&wf.number()) => self.push(
                        "ONEOF_FIELD_REMOVED",
                        format!("{at}/{name}/{}", wf.number()),
                        format!(
                            "{} (field {}) of oneof `{name}` in {} is missing from the reader's \
                             schema, so a value the writer chose for the oneof is dropped",
                            describe(&wf),
                            wf.number(),
                            w.full_name()
                        ),
                    ),
                    None => {}
                }
            }
        }

        let numbers: BTreeSet<u32> = w_top.keys().chain(r_top.keys()).copied().collect();
        for n in numbers {
            match (w_top.get(&n), r_top.get(&n)) {
                (Some(wf), None) if wf.is_required() && !r_all.contains_key(&n) => self.push(
                    "REQUIRED_FIELD_REMOVED",
                    format!("{at}/{n}"),
                    format!(
                        "required field {} ({n}) of {} is missing from the reader's schema",
                        describe(wf),
                        w.full_name()
                    ),
                ),
                (None, Some(rf)) if rf.is_required() && !w_all.contains_key(&n) => self.push(
                    "REQUIRED_FIELD_ADDED",
                    format!("{at}/{n}"),
                    format!(
                        "the reader's schema requires {} ({n}) in {}, which the writer's schema \
                         does not have",
                        describe(rf),
                        r.full_name()
                    ),
                ),
                (Some(wf), Some(rf)) => self.compare_field(w, wf, rf),
                _ => {}
            }
        }

        // Fields whose oneof membership changed were compared by neither loop above.
        for (n, wf) in &w_all {
            let Some(rf) = r_all.get(n) else { continue };
            let same_place = match (w_oneof_of.get(n), r_oneof_of.get(n)) {
                (None, None) => true,
                (Some(a), Some(b)) => a == b,
                _ => false,
            };
            if !same_place {
                self.compare_field(w, wf, rf);
            }
        }
    }

    fn compare_field(
        &mut self,
        message: &MessageDescriptor,
        wf: &FieldDescriptor,
        rf: &FieldDescriptor,
    ) {
        let location = format!("{}/{}", path(message), wf.number());
        let what = || {
            format!(
                "field {} of {} is {} in the writer's schema but {} in the reader's",
                wf.number(),
                message.full_name(),
                describe(wf),
                describe(rf)
            )
        };
        if rf.is_required() && !wf.is_required() {
            self.push(
                "REQUIRED_FIELD_ADDED",
                location.clone(),
                format!("{}; the writer may leave it out", what()),
            );
        }
        let (ws, rs) = (Shape::of(wf), Shape::of(rf));
        match (&ws, &rs) {
            (Shape::Scalar(wg), Shape::Scalar(rg)) => {
                if wg != rg {
                    self.push(
                        "FIELD_SCALAR_KIND_CHANGED",
                        location,
                        format!("{}; the two encode differently on the wire", what()),
                    );
                } else if wf.is_list() != rf.is_list() && *wg != ScalarGroup::LengthDelimited {
                    self.push(
                        "FIELD_NUMERIC_LABEL_CHANGED",
                        location,
                        format!(
                            "{}; repeated numbers are packed, which a singular field does not \
                             parse (and the reverse)",
                            what()
                        ),
                    );
                }
            }
            (Shape::Message(wm), Shape::Message(rm)) => {
                self.compare_named(location, wm, rm, &what);
            }
            (Shape::Map(wk, wv), Shape::Map(rk, rv)) => {
                for (side, wkind, rkind) in [("key", wk, rk), ("value", wv, rv)] {
                    let (a, b) = (Shape::of_kind(wkind), Shape::of_kind(rkind));
                    match (&a, &b) {
                        (Shape::Scalar(x), Shape::Scalar(y)) if x != y => self.push(
                            "FIELD_SCALAR_KIND_CHANGED",
                            location.clone(),
                            format!("{}; the map {side} types encode differently", what()),
                        ),
                        (Shape::Message(x), Shape::Message(y)) => {
                            self.compare_named(location.clone(), x, y, &what);
                        }
                        (Shape::Scalar(_), Shape::Scalar(_)) => {}
                        _ => self.push(
                            "FIELD_KIND_CHANGED",
                            location.clone(),
                            format!(
                                "{}; the map {side} is {} in one and {} in the other",
                                what(),
                                a.class(),
                                b.class()
                            ),
                        ),
                    }
                }
            }
            _ => self.push(
                "FIELD_KIND_CHANGED",
                location,
                format!(
                    "{}: {} in the writer's schema, {} in the reader's",
                    what(),
                    ws.class(),
                    rs.class()
                ),
            ),
        }
    }

    fn compare_nested(&mut self, wm: &MessageDescriptor, rm: &MessageDescriptor) -> bool {
        self.field_depth += 1;
        let ok = self.compare_message(wm, rm);
        self.field_depth -= 1;
        ok
    }

    /// A field of message type on both sides: the types must have the same name relative to
    /// their package and a compatible structure.
    fn compare_named(
        &mut self,
        location: String,
        wm: &MessageDescriptor,
        rm: &MessageDescriptor,
        what: &dyn Fn() -> String,
    ) {
        if local_name(wm) != local_name(rm) {
            self.push(
                "FIELD_NAMED_TYPE_CHANGED",
                location,
                format!("{}; the message types differ", what()),
            );
        } else if self.field_depth >= MAX_FIELD_DEPTH {
            // Too deep to follow from here; see `MAX_FIELD_DEPTH`.
        } else if !self.compare_nested(wm, rm) {
            self.push(
                "FIELD_NAMED_TYPE_CHANGED",
                location,
                format!(
                    "{}; message {} changed incompatibly (see its own entries)",
                    what(),
                    rm.full_name()
                ),
            );
        }
    }
}
