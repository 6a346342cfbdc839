//! Writes a [`Model`] back as compact JSON, in one of three forms.
//!
//! - [`Form::Canonical`]: what Java's `Schema.toString()` prints (Confluent's canonical
//!   string): keys in Java's order, names relative to the enclosing namespace, named types of
//!   references by name, doc, defaults, aliases, `order` and custom properties kept. Where
//!   Java keeps the source order of custom properties we sort them, so that key order never
//!   changes the text.
//! - [`Form::Normalized`]: Confluent's normalized form, made principled: every name written
//!   in full (`"name": "com.acme.Order"`, no `namespace` key, references by full name), type
//!   and field aliases fully qualified and sorted, `"order": "ascending"` and empty type docs
//!   dropped, primitives without properties written as bare strings. Two schemas that mean
//!   the same thing but spell names differently (short vs full, inherited vs explicit
//!   namespace, `{"type": "int"}` vs `"int"`) normalize to the same text.

use std::collections::HashSet;
use std::fmt::Write;

use serde_json::Value;

use super::model::{FullName, Model, NamedKind, Node, Props};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Form {
    Canonical,
    Normalized,
}

pub(crate) fn write(model: &Model, form: Form) -> String {
    let mut w = Writer {
        model,
        form,
        out: String::new(),
        defined: HashSet::new(),
    };
    w.node(&model.root, None);
    w.out
}

struct Writer<'a> {
    model: &'a Model,
    form: Form,
    out: String,
    defined: HashSet<usize>,
}

impl Writer<'_> {
    fn node(&mut self, node: &Node, ns: Option<&str>) {
        match node {
            Node::Primitive { kind, props } => {
                if props.is_empty() {
                    self.string(kind.name());
                } else {
                    self.out.push_str("{\"type\":");
                    self.string(kind.name());
                    self.props(props);
                    self.out.push('}');
                }
            }
            Node::Array { items, props } => {
                self.out.push_str("{\"type\":\"array\",\"items\":");
                self.node(items, ns);
                self.props(props);
                self.out.push('}');
            }
            Node::Map { values, props } => {
                self.out.push_str("{\"type\":\"map\",\"values\":");
                self.node(values, ns);
                self.props(props);
                self.out.push('}');
            }
            Node::Union(branches) => {
                self.out.push('[');
                for (i, b) in branches.iter().enumerate() {
                    if i > 0 {
                        self.out.push(',');
                    }
                    self.node(b, ns);
                }
                self.out.push(']');
            }
            Node::Named(i) => self.named(*i, ns),
        }
    }

    fn named(&mut self, index: usize, ns: Option<&str>) {
        let model = self.model;
        let named = &model.named[index];
        if self.defined.contains(&index) || named.from_reference {
            let name = self.reference(&named.name, ns);
            self.string(&name);
            return;
        }
        self.defined.insert(index);
        let own_ns = named.name.namespace.as_deref();
        match self.form {
            Form::Canonical => {
                self.out.push_str("{\"type\":");
                self.string(named.kind.type_name());
                self.out.push_str(",\"name\":");
                self.string(&named.name.name);
                if own_ns != ns {
                    self.out.push_str(",\"namespace\":");
                    self.string(own_ns.unwrap_or(""));
                }
                if let Some(doc) = &named.doc {
                    self.out.push_str(",\"doc\":");
                    self.string(doc);
                }
                self.body(&named.kind, own_ns);
                self.props(&named.props);
                if !named.aliases.is_empty() {
                    let aliases: Vec<String> =
                        named.aliases.iter().map(|a| relative(a, own_ns)).collect();
                    self.out.push_str(",\"aliases\":");
                    self.strings(&aliases);
                }
            }
            Form::Normalized => {
                self.out.push_str("{\"name\":");
                self.string(&named.name.full());
                if own_ns.is_none() && ns.is_some() {
                    // A bare name would inherit the enclosing namespace.
                    self.out.push_str(",\"namespace\":\"\"");
                }
                self.out.push_str(",\"type\":");
                self.string(named.kind.type_name());
                self.body(&named.kind, own_ns);
                if let Some(doc) = named.doc.as_deref().filter(|d| !d.is_empty()) {
                    self.out.push_str(",\"doc\":");
                    self.string(doc);
                }
                if !named.aliases.is_empty() {
                    let mut aliases: Vec<String> =
                        named.aliases.iter().map(FullName::full).collect();
                    aliases.sort();
                    aliases.dedup();
                    self.out.push_str(",\"aliases\":");
                    self.strings(&aliases);
                }
                self.props(&named.props);
            }
        }
        self.out.push('}');
    }

    /// Symbols and default, size, or fields: the part that follows the name and doc.
    fn body(&mut self, kind: &NamedKind, ns: Option<&str>) {
        match kind {
            NamedKind::Enum { symbols, default } => {
                self.out.push_str(",\"symbols\":");
                self.strings(symbols);
                if let Some(d) = default {
                    self.out.push_str(",\"default\":");
                    self.string(d);
                }
            }
            NamedKind::Fixed(size) => {
                let _ = write!(self.out, ",\"size\":{size}");
            }
            NamedKind::Record(fields) => {
                self.out.push_str(",\"fields\":[");
                for (i, f) in fields.iter().enumerate() {
                    if i > 0 {
                        self.out.push(',');
                    }
                    self.out.push_str("{\"name\":");
                    self.string(&f.name);
                    self.out.push_str(",\"type\":");
                    self.node(&f.schema, ns);
                    let canonical = self.form == Form::Canonical;
                    if canonical {
                        if let Some(doc) = &f.doc {
                            self.out.push_str(",\"doc\":");
                            self.string(doc);
                        }
                        if let Some(d) = &f.default {
                            self.out.push_str(",\"default\":");
                            value(&mut self.out, d);
                        }
                        if let Some(o) = &f.order {
                            self.out.push_str(",\"order\":");
                            self.string(o);
                        }
                        if !f.aliases.is_empty() {
                            self.out.push_str(",\"aliases\":");
                            self.strings(&f.aliases);
                        }
                    } else {
                        if let Some(o) = &f.order {
                            self.out.push_str(",\"order\":");
                            self.string(o);
                        }
                        if let Some(doc) = &f.doc {
                            self.out.push_str(",\"doc\":");
                            self.string(doc);
                        }
                        if !f.aliases.is_empty() {
                            let mut aliases = f.aliases.clone();
                            aliases.sort();
                            aliases.dedup();
                            self.out.push_str(",\"aliases\":");
                            self.strings(&aliases);
                        }
                        if let Some(d) = &f.default {
                            self.out.push_str(",\"default\":");
                            value(&mut self.out, d);
                        }
                    }
                    self.props(&f.props);
                    self.out.push('}');
                }
                self.out.push(']');
            }
        }
    }

    /// How to write a reference to `name` where the enclosing namespace is `ns`.
    fn reference(&self, name: &FullName, ns: Option<&str>) -> String {
        match self.form {
            Form::Canonical => relative(name, ns),
            Form::Normalized => match &name.namespace {
                Some(_) => name.full(),
                None if ns.is_some() => format!(".{}", name.name),
                None => name.name.clone(),
            },
        }
    }

    fn props(&mut self, props: &Props) {
        // `Props` is a BTreeMap: sorted by key.
        for (k, v) in props {
            self.out.push(',');
            self.string(k);
            self.out.push(':');
            value(&mut self.out, v);
        }
    }

    fn string(&mut self, s: &str) {
        string(&mut self.out, s);
    }

    fn strings(&mut self, list: &[String]) {
        self.out.push('[');
        for (i, s) in list.iter().enumerate() {
            if i > 0 {
                self.out.push(',');
            }
            self.string(s);
        }
        self.out.push(']');
    }
}

/// `name` as written inside namespace `ns`: simple when it is in `ns`, `.Name` for the null
/// namespace inside another one, full otherwise.
fn relative(name: &FullName, ns: Option<&str>) -> String {
    match (&name.namespace, ns) {
        (Some(a), Some(b)) if a == b => name.name.clone(),
        (Some(_), _) => name.full(),
        (None, Some(_)) => format!(".{}", name.name),
        (None, None) => name.name.clone(),
    }
}

fn string(out: &mut String, s: &str) {
    // Serializing a str cannot fail.
    out.push_str(&serde_json::to_string(s).unwrap_or_default());
}

/// Compact JSON with object keys sorted, whatever serde_json's map order is.
fn value(out: &mut String, v: &Value) {
    match v {
        Value::Object(map) => {
            let mut keys: Vec<&String> = map.keys().collect();
            keys.sort();
            out.push('{');
            for (i, k) in keys.into_iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                string(out, k);
                out.push(':');
                value(out, &map[k]);
            }
            out.push('}');
        }
        Value::Array(list) => {
            out.push('[');
            for (i, x) in list.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                value(out, x);
            }
            out.push(']');
        }
        other => out.push_str(&other.to_string()),
    }
}
