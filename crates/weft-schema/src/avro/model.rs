//! Our own model of an Avro schema, parsed from its JSON text.
//!
//! apache-avro's `Schema` drops what the registry needs to keep (custom properties on
//! primitives, field `order`, where a named type was defined) and is lenient where Java is
//! strict (field defaults, redefined names, non-object fields), so the parser here builds a
//! small arena of named types and checks the Avro specification's rules itself, each error
//! naming where it is (`/fields/2/type`, `record com.acme.Order`).

use std::collections::{BTreeMap, HashMap, VecDeque};

use serde_json::{Map, Value};

/// A parsed schema text and every named type it can use: those of its references first
/// (`Named::from_reference`), then its own.
#[derive(Debug)]
pub(crate) struct Model {
    pub(crate) named: Vec<Named>,
    pub(crate) root: Node,
    by_name: HashMap<String, usize>,
}

/// A schema node. Named types live in the arena and are pointed to by index.
#[derive(Debug, Clone)]
pub(crate) enum Node {
    Primitive { kind: Primitive, props: Props },
    Array { items: Box<Node>, props: Props },
    Map { values: Box<Node>, props: Props },
    Union(Vec<Node>),
    Named(usize),
}

/// Custom properties (including `logicalType`, `precision`, `scale`), sorted by key.
pub(crate) type Props = BTreeMap<String, Value>;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Primitive {
    Null,
    Boolean,
    Int,
    Long,
    Float,
    Double,
    Bytes,
    String,
}

impl Primitive {
    pub(crate) const ALL: [Primitive; 8] = [
        Primitive::Null,
        Primitive::Boolean,
        Primitive::Int,
        Primitive::Long,
        Primitive::Float,
        Primitive::Double,
        Primitive::Bytes,
        Primitive::String,
    ];

    pub(crate) fn name(self) -> &'static str {
        match self {
            Primitive::Null => "null",
            Primitive::Boolean => "boolean",
            Primitive::Int => "int",
            Primitive::Long => "long",
            Primitive::Float => "float",
            Primitive::Double => "double",
            Primitive::Bytes => "bytes",
            Primitive::String => "string",
        }
    }

    fn from_name(name: &str) -> Option<Primitive> {
        Primitive::ALL.into_iter().find(|p| p.name() == name)
    }
}

/// A full name: optional namespace and simple name.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub(crate) struct FullName {
    pub(crate) namespace: Option<String>,
    pub(crate) name: String,
}

impl FullName {
    pub(crate) fn full(&self) -> String {
        match &self.namespace {
            Some(ns) => format!("{ns}.{}", self.name),
            None => self.name.clone(),
        }
    }
}

#[derive(Debug)]
pub(crate) struct Named {
    pub(crate) name: FullName,
    /// Fully qualified, in the order written.
    pub(crate) aliases: Vec<FullName>,
    pub(crate) doc: Option<String>,
    pub(crate) kind: NamedKind,
    pub(crate) props: Props,
    /// Defined by one of the references, not by the schema text itself.
    pub(crate) from_reference: bool,
}

#[derive(Debug)]
pub(crate) enum NamedKind {
    Record(Vec<Field>),
    Enum {
        symbols: Vec<String>,
        default: Option<String>,
    },
    Fixed(usize),
}

impl NamedKind {
    pub(crate) fn type_name(&self) -> &'static str {
        match self {
            NamedKind::Record(_) => "record",
            NamedKind::Enum { .. } => "enum",
            NamedKind::Fixed(_) => "fixed",
        }
    }
}

#[derive(Debug)]
pub(crate) struct Field {
    pub(crate) name: String,
    pub(crate) aliases: Vec<String>,
    pub(crate) doc: Option<String>,
    pub(crate) default: Option<Value>,
    /// `descending` or `ignore`; `ascending` (the default) is stored as `None`.
    pub(crate) order: Option<String>,
    pub(crate) schema: Node,
    pub(crate) props: Props,
}

/// A parse failure: where (a JSON-pointer-like path into the text) and why.
#[derive(Debug)]
pub(crate) enum ParseError {
    Invalid { at: String, message: String },
    Unresolved { at: String, name: String },
}

impl ParseError {
    fn invalid(at: &str, message: impl Into<String>) -> ParseError {
        ParseError::Invalid {
            at: at.to_owned(),
            message: message.into(),
        }
    }
}

type PResult<T> = Result<T, ParseError>;

/// Java reads a fixed size as an int; larger sizes are refused.
const MAX_FIXED_SIZE: u64 = i32::MAX as u64;

/// How deep types may nest, references followed (see [`Model::check_nesting`]).
pub(crate) const MAX_NESTING: usize = 64;

#[derive(Clone, Copy)]
enum Height {
    Unvisited,
    InProgress,
    Done(usize),
}

impl Model {
    /// Parses `text` after `references` (texts whose named types `text` may use). References
    /// may come in any order: one that uses a name defined by a later one is retried.
    pub(crate) fn parse(
        text: &str,
        references: &[&str],
    ) -> Result<Model, (Option<usize>, ParseError)> {
        let mut model = Model {
            named: Vec::new(),
            root: Node::Union(Vec::new()),
            by_name: HashMap::new(),
        };
        // A reference that uses a name no earlier one defined waits for the reference that
        // defines it: each text is parsed once more per name it waited for.
        let mut queue: VecDeque<usize> = (0..references.len()).collect();
        let mut waiting: BTreeMap<String, Vec<(usize, ParseError)>> = BTreeMap::new();
        while let Some(i) = queue.pop_front() {
            let json = parse_json(references[i]).map_err(|e| (Some(i), e))?;
            let mark = model.named.len();
            match model.node(&json, None, "", true) {
                Ok(_) => {
                    for named in &model.named[mark..] {
                        if let Some(list) = waiting.remove(&named.name.full()) {
                            queue.extend(list.into_iter().map(|(j, _)| j));
                        }
                    }
                }
                Err(ParseError::Unresolved { at, name }) => {
                    model.rollback(mark);
                    waiting
                        .entry(name.clone())
                        .or_default()
                        .push((i, ParseError::Unresolved { at, name }));
                }
                Err(e) => return Err((Some(i), e)),
            }
        }
        // What still waits names a type no reference defines: report the first reference.
        if let Some((i, e)) = waiting.into_values().flatten().min_by_key(|(i, _)| *i) {
            return Err((Some(i), e));
        }
        let json = parse_json(text).map_err(|e| (None, e))?;
        model.root = model.node(&json, None, "", false).map_err(|e| (None, e))?;
        model.check_nesting().map_err(|e| (None, e))?;
        Ok(model)
    }

    /// One text nests at most 128 JSON levels (serde_json's limit), but references chain
    /// texts: refuse a schema whose types nest deeper than [`MAX_NESTING`] across them, so
    /// that every recursive walk over it stays shallow. apache-avro's parser, which
    /// recurses through references, overflows a 2 MiB stack in a debug build at about 120
    /// chained references, hence 64.
    /// Recursive types are not deep: a type met again inside itself ends the path.
    fn check_nesting(&self) -> PResult<()> {
        let mut memo = vec![Height::Unvisited; self.named.len()];
        for i in 0..self.named.len() {
            self.height(&Node::Named(i), 0, &mut memo)?;
        }
        self.height(&self.root, 0, &mut memo).map(drop)
    }

    /// The number of nodes on the longest path down from `node`, which sits at `depth`.
    fn height(&self, node: &Node, depth: usize, memo: &mut [Height]) -> PResult<usize> {
        let too_deep = || {
            ParseError::invalid(
                "",
                format!("types nest more than {MAX_NESTING} levels deep (through references)"),
            )
        };
        if depth > MAX_NESTING {
            return Err(too_deep());
        }
        Ok(match node {
            Node::Primitive { .. } => 1,
            Node::Array { items: inner, .. } | Node::Map { values: inner, .. } => {
                1 + self.height(inner, depth + 1, memo)?
            }
            Node::Union(branches) => {
                let mut h = 0;
                for b in branches {
                    h = h.max(self.height(b, depth + 1, memo)?);
                }
                1 + h
            }
            Node::Named(i) => match memo[*i] {
                Height::Done(h) if depth + h > MAX_NESTING + 1 => return Err(too_deep()),
                Height::Done(h) => h,
                Height::InProgress => 1,
                Height::Unvisited => {
                    memo[*i] = Height::InProgress;
                    let mut h = 0;
                    if let NamedKind::Record(fields) = &self.named[*i].kind {
                        for f in fields {
                            h = h.max(self.height(&f.schema, depth + 1, memo)?);
                        }
                    }
                    memo[*i] = Height::Done(1 + h);
                    1 + h
                }
            },
        })
    }

    fn rollback(&mut self, mark: usize) {
        self.named.truncate(mark);
        self.by_name.retain(|_, i| *i < mark);
    }

    pub(crate) fn lookup(&self, full_name: &str) -> Option<usize> {
        self.by_name.get(full_name).copied()
    }

    fn node(&mut self, json: &Value, ns: Option<&str>, at: &str, from_ref: bool) -> PResult<Node> {
        match json {
            Value::String(name) => self.name_ref(name, ns, at),
            Value::Array(branches) => self.union(branches, ns, at, from_ref),
            Value::Object(obj) => self.object(obj, ns, at, from_ref),
            other => Err(ParseError::invalid(
                at,
                format!("a schema must be a type name, an object or an array (union), not {other}"),
            )),
        }
    }

    fn name_ref(&self, name: &str, ns: Option<&str>, at: &str) -> PResult<Node> {
        if let Some(p) = Primitive::from_name(name) {
            return Ok(Node::Primitive {
                kind: p,
                props: Props::new(),
            });
        }
        if matches!(
            name,
            "record" | "enum" | "fixed" | "array" | "map" | "error"
        ) {
            return Err(ParseError::invalid(
                at,
                format!(
                    "{name:?} is a complex type: write it as an object with \"type\": {name:?}"
                ),
            ));
        }
        let full = qualify(name, ns, at)?;
        match self.lookup(&full.full()) {
            Some(i) => Ok(Node::Named(i)),
            None => Err(ParseError::Unresolved {
                at: at.to_owned(),
                name: full.full(),
            }),
        }
    }

    fn union(
        &mut self,
        branches: &[Value],
        ns: Option<&str>,
        at: &str,
        from_ref: bool,
    ) -> PResult<Node> {
        let mut nodes = Vec::with_capacity(branches.len());
        let mut seen: Vec<String> = Vec::new();
        for (i, b) in branches.iter().enumerate() {
            let here = format!("{at}/{i}");
            let node = self.node(b, ns, &here, from_ref)?;
            let key = match &node {
                Node::Union(_) => {
                    return Err(ParseError::invalid(
                        &here,
                        "a union may not directly contain another union",
                    ));
                }
                Node::Primitive { kind, .. } => kind.name().to_owned(),
                Node::Array { .. } => "array".to_owned(),
                Node::Map { .. } => "map".to_owned(),
                Node::Named(n) => self.named[*n].name.full(),
            };
            if seen.contains(&key) {
                return Err(ParseError::invalid(
                    &here,
                    format!("duplicate {key} in union"),
                ));
            }
            seen.push(key);
            nodes.push(node);
        }
        Ok(Node::Union(nodes))
    }

    fn object(
        &mut self,
        obj: &Map<String, Value>,
        ns: Option<&str>,
        at: &str,
        from_ref: bool,
    ) -> PResult<Node> {
        let ty = match obj.get("type") {
            Some(Value::String(t)) => t.as_str(),
            Some(Value::Object(_) | Value::Array(_)) => {
                return Err(ParseError::invalid(
                    at,
                    "\"type\" of a schema object must be a type name; nest schemas in fields, items or values",
                ));
            }
            Some(other) => {
                return Err(ParseError::invalid(
                    at,
                    format!("\"type\" must be a string, not {other}"),
                ));
            }
            None => return Err(ParseError::invalid(at, "schema object has no \"type\"")),
        };
        if let Some(lt) = obj.get("logicalType")
            && !lt.is_string()
        {
            return Err(ParseError::invalid(
                at,
                format!("\"logicalType\" must be a string, not {lt}"),
            ));
        }
        match ty {
            "record" => self.record(obj, ns, at, from_ref),
            "enum" => self.enumeration(obj, ns, at, from_ref),
            "fixed" => self.fixed(obj, ns, at, from_ref),
            "array" => {
                let items = obj
                    .get("items")
                    .ok_or_else(|| ParseError::invalid(at, "array has no \"items\""))?;
                let items = self.node(items, ns, &format!("{at}/items"), from_ref)?;
                Ok(Node::Array {
                    items: Box::new(items),
                    props: props(obj, &["type", "items"]),
                })
            }
            "map" => {
                let values = obj
                    .get("values")
                    .ok_or_else(|| ParseError::invalid(at, "map has no \"values\""))?;
                let values = self.node(values, ns, &format!("{at}/values"), from_ref)?;
                Ok(Node::Map {
                    values: Box::new(values),
                    props: props(obj, &["type", "values"]),
                })
            }
            "error" => Err(ParseError::invalid(
                at,
                "\"error\" types belong to Avro protocols, not to schemas: use \"record\"",
            )),
            other => match Primitive::from_name(other) {
                Some(kind) => Ok(Node::Primitive {
                    kind,
                    props: props(obj, &["type"]),
                }),
                // `{"type": "com.acme.Named"}`: a reference to a named type.
                None => self.name_ref(other, ns, at),
            },
        }
    }

    /// Name, namespace, aliases and doc of a named type; registers nothing.
    fn header(
        &self,
        obj: &Map<String, Value>,
        ns: Option<&str>,
        at: &str,
    ) -> PResult<(FullName, Vec<FullName>, Option<String>)> {
        let name = match obj.get("name") {
            Some(Value::String(n)) => n,
            Some(other) => {
                return Err(ParseError::invalid(
                    at,
                    format!("\"name\" must be a string, not {other}"),
                ));
            }
            None => return Err(ParseError::invalid(at, "named type has no \"name\"")),
        };
        let own_ns = match obj.get("namespace") {
            None | Some(Value::Null) => ns,
            Some(Value::String(s)) => {
                validate_namespace(s, at)?;
                Some(s.as_str())
            }
            Some(other) => {
                return Err(ParseError::invalid(
                    at,
                    format!("\"namespace\" must be a string, not {other}"),
                ));
            }
        };
        let full = qualify(name, own_ns, at)?;
        if Primitive::from_name(&full.name).is_some() {
            return Err(ParseError::invalid(
                at,
                format!(
                    "{:?} is a primitive type name and cannot name a {}",
                    full.name, "named type"
                ),
            ));
        }
        let aliases = match obj.get("aliases") {
            None => Vec::new(),
            Some(Value::Array(list)) => list
                .iter()
                .map(|a| match a {
                    Value::String(a) => {
                        qualify(a, full.namespace.as_deref(), &format!("{at}/aliases"))
                    }
                    other => Err(ParseError::invalid(
                        at,
                        format!("alias {other} of {} is not a string", full.full()),
                    )),
                })
                .collect::<PResult<_>>()?,
            Some(other) => {
                return Err(ParseError::invalid(
                    at,
                    format!("\"aliases\" must be an array of names, not {other}"),
                ));
            }
        };
        Ok((full, aliases, doc_of(obj, at)?))
    }

    fn define(&mut self, named: Named, at: &str) -> PResult<usize> {
        let full = named.name.full();
        if self.by_name.contains_key(&full) {
            return Err(ParseError::invalid(
                at,
                format!("{full} is defined twice (a name can be defined once)"),
            ));
        }
        let i = self.named.len();
        self.by_name.insert(full, i);
        self.named.push(named);
        Ok(i)
    }

    fn record(
        &mut self,
        obj: &Map<String, Value>,
        ns: Option<&str>,
        at: &str,
        from_ref: bool,
    ) -> PResult<Node> {
        let (name, aliases, doc) = self.header(obj, ns, at)?;
        let fields_json = match obj.get("fields") {
            Some(Value::Array(f)) => f,
            Some(other) => {
                return Err(ParseError::invalid(
                    at,
                    format!(
                        "\"fields\" of record {} must be an array, not {other}",
                        name.full()
                    ),
                ));
            }
            None => {
                return Err(ParseError::invalid(
                    at,
                    format!("record {} has no \"fields\"", name.full()),
                ));
            }
        };
        let record_ns = name.namespace.clone();
        let record_name = name.full();
        // Registered before its fields so that they may refer to it (recursive types).
        let index = self.define(
            Named {
                name,
                aliases,
                doc,
                kind: NamedKind::Record(Vec::new()),
                props: props(
                    obj,
                    &["type", "name", "namespace", "doc", "aliases", "fields"],
                ),
                from_reference: from_ref,
            },
            at,
        )?;
        let mut fields: Vec<Field> = Vec::with_capacity(fields_json.len());
        for (i, f) in fields_json.iter().enumerate() {
            let fat = format!("{at}/fields/{i}");
            let f = f.as_object().ok_or_else(|| {
                ParseError::invalid(
                    &fat,
                    format!("field {i} of record {record_name} is not an object"),
                )
            })?;
            let fname = match f.get("name") {
                Some(Value::String(n)) => n.clone(),
                _ => {
                    return Err(ParseError::invalid(
                        &fat,
                        format!("field {i} of record {record_name} has no string \"name\""),
                    ));
                }
            };
            if !is_simple_name(&fname) {
                return Err(ParseError::invalid(
                    &fat,
                    format!(
                        "field name {fname:?} of record {record_name} is not a valid Avro name ([A-Za-z_][A-Za-z0-9_]*)"
                    ),
                ));
            }
            if fields.iter().any(|x| x.name == fname) {
                return Err(ParseError::invalid(
                    &fat,
                    format!("record {record_name} has two fields named {fname:?}"),
                ));
            }
            let ty = f.get("type").ok_or_else(|| {
                ParseError::invalid(
                    &fat,
                    format!("field {fname:?} of record {record_name} has no \"type\""),
                )
            })?;
            let schema = self.node(ty, record_ns.as_deref(), &format!("{fat}/type"), from_ref)?;
            let default = f.get("default").cloned();
            let aliases = match f.get("aliases") {
                None => Vec::new(),
                Some(Value::Array(list)) => list
                    .iter()
                    .map(|a| match a.as_str() {
                        Some(a) if is_simple_name(a) => Ok(a.to_owned()),
                        _ => Err(ParseError::invalid(
                            &fat,
                            format!("alias {a} of field {fname:?} is not a valid field name"),
                        )),
                    })
                    .collect::<PResult<_>>()?,
                Some(other) => {
                    return Err(ParseError::invalid(
                        &fat,
                        format!("\"aliases\" of field {fname:?} must be an array, not {other}"),
                    ));
                }
            };
            let order = match f.get("order") {
                None => None,
                Some(Value::String(o)) if o == "ascending" => None,
                Some(Value::String(o)) if o == "descending" || o == "ignore" => Some(o.clone()),
                Some(other) => {
                    return Err(ParseError::invalid(
                        &fat,
                        format!(
                            "\"order\" of field {fname:?} must be \"ascending\", \"descending\" or \"ignore\", not {other}"
                        ),
                    ));
                }
            };
            fields.push(Field {
                name: fname,
                aliases,
                doc: doc_of(f, &fat)?,
                default,
                order,
                schema,
                props: props(f, &["name", "type", "doc", "default", "aliases", "order"]),
            });
        }
        self.named[index].kind = NamedKind::Record(fields);
        // Defaults are checked once the record is complete: a default may hold a value of
        // the record itself (a recursive type), which needs all of its fields.
        if let NamedKind::Record(fields) = &self.named[index].kind {
            for (i, f) in fields.iter().enumerate() {
                if let Some(d) = &f.default
                    && let Err(why) = self.valid_default(&f.schema, d, false)
                {
                    return Err(ParseError::invalid(
                        &format!("{at}/fields/{i}/default"),
                        format!(
                            "invalid default {d} for field {:?} of record {record_name}: {why}",
                            f.name
                        ),
                    ));
                }
            }
        }
        Ok(Node::Named(index))
    }

    fn enumeration(
        &mut self,
        obj: &Map<String, Value>,
        ns: Option<&str>,
        at: &str,
        from_ref: bool,
    ) -> PResult<Node> {
        let (name, aliases, doc) = self.header(obj, ns, at)?;
        let full = name.full();
        let list = match obj.get("symbols") {
            Some(Value::Array(s)) => s,
            _ => {
                return Err(ParseError::invalid(
                    at,
                    format!("enum {full} needs a \"symbols\" array"),
                ));
            }
        };
        let mut symbols: Vec<String> = Vec::with_capacity(list.len());
        for s in list {
            let s = match s {
                Value::String(s) if is_simple_name(s) => s,
                other => {
                    return Err(ParseError::invalid(
                        &format!("{at}/symbols"),
                        format!(
                            "symbol {other} of enum {full} is not a valid Avro name ([A-Za-z_][A-Za-z0-9_]*)"
                        ),
                    ));
                }
            };
            if symbols.contains(s) {
                return Err(ParseError::invalid(
                    &format!("{at}/symbols"),
                    format!("enum {full} has symbol {s:?} twice"),
                ));
            }
            symbols.push(s.clone());
        }
        let default = match obj.get("default") {
            None => None,
            Some(Value::String(d)) if symbols.contains(d) => Some(d.clone()),
            Some(other) => {
                return Err(ParseError::invalid(
                    &format!("{at}/default"),
                    format!("default {other} of enum {full} is not one of its symbols"),
                ));
            }
        };
        let i = self.define(
            Named {
                name,
                aliases,
                doc,
                kind: NamedKind::Enum { symbols, default },
                props: props(
                    obj,
                    &[
                        "type",
                        "name",
                        "namespace",
                        "doc",
                        "aliases",
                        "symbols",
                        "default",
                    ],
                ),
                from_reference: from_ref,
            },
            at,
        )?;
        Ok(Node::Named(i))
    }

    fn fixed(
        &mut self,
        obj: &Map<String, Value>,
        ns: Option<&str>,
        at: &str,
        from_ref: bool,
    ) -> PResult<Node> {
        let (name, aliases, doc) = self.header(obj, ns, at)?;
        let size = match obj.get("size").and_then(Value::as_u64) {
            Some(s) if s <= MAX_FIXED_SIZE => s as usize,
            _ => {
                return Err(ParseError::invalid(
                    at,
                    format!(
                        "fixed {} needs a \"size\" between 0 and {MAX_FIXED_SIZE}",
                        name.full()
                    ),
                ));
            }
        };
        let i = self.define(
            Named {
                name,
                aliases,
                doc,
                kind: NamedKind::Fixed(size),
                props: props(
                    obj,
                    &["type", "name", "namespace", "doc", "aliases", "size"],
                ),
                from_reference: from_ref,
            },
            at,
        )?;
        Ok(Node::Named(i))
    }

    /// Whether `value` is a valid default for `node` (the Avro specification's table; for a
    /// union, the first branch — unless `any_branch`, which Java uses for values nested in a
    /// record default).
    pub(crate) fn valid_default(
        &self,
        node: &Node,
        value: &Value,
        any_branch: bool,
    ) -> Result<(), String> {
        let fail = |expected: &str| Err(format!("expected {expected}"));
        match node {
            Node::Primitive { kind, .. } => match kind {
                Primitive::Null if value.is_null() => Ok(()),
                Primitive::Null => fail("null"),
                Primitive::Boolean if value.is_boolean() => Ok(()),
                Primitive::Boolean => fail("a boolean"),
                Primitive::Int if value.as_i64().is_some_and(|v| i32::try_from(v).is_ok()) => {
                    Ok(())
                }
                Primitive::Int => fail("an integer between -2^31 and 2^31-1"),
                Primitive::Long if value.is_i64() => Ok(()),
                Primitive::Long => fail("an integer between -2^63 and 2^63-1"),
                Primitive::Float | Primitive::Double if value.is_number() => Ok(()),
                Primitive::Float | Primitive::Double => fail("a number"),
                Primitive::String if value.is_string() => Ok(()),
                Primitive::String => fail("a string"),
                Primitive::Bytes => byte_string(value, None),
            },
            Node::Array { items, .. } => match value {
                Value::Array(list) => list
                    .iter()
                    .try_for_each(|v| self.valid_default(items, v, true)),
                _ => fail("an array"),
            },
            Node::Map { values, .. } => match value {
                Value::Object(obj) => obj
                    .values()
                    .try_for_each(|v| self.valid_default(values, v, true)),
                _ => fail("an object"),
            },
            Node::Union(branches) => {
                if any_branch {
                    if branches
                        .iter()
                        .any(|b| self.valid_default(b, value, true).is_ok())
                    {
                        Ok(())
                    } else {
                        fail("a value of one of the union's branches")
                    }
                } else {
                    match branches.first() {
                        Some(first) => self.valid_default(first, value, true).map_err(|why| {
                            format!(
                                "a union's default must match its first branch ({}): {why}",
                                self.describe(first)
                            )
                        }),
                        None => fail("nothing: an empty union has no values"),
                    }
                }
            }
            Node::Named(i) => {
                let named = &self.named[*i];
                match &named.kind {
                    NamedKind::Fixed(size) => byte_string(value, Some(*size)),
                    NamedKind::Enum { symbols, .. } => match value.as_str() {
                        Some(s) if symbols.iter().any(|x| x == s) => Ok(()),
                        _ => fail(&format!("one of the symbols of enum {}", named.name.full())),
                    },
                    NamedKind::Record(fields) => {
                        let Value::Object(obj) = value else {
                            return fail(&format!("an object for record {}", named.name.full()));
                        };
                        for f in fields {
                            match obj.get(&f.name) {
                                Some(v) => self
                                    .valid_default(&f.schema, v, true)
                                    .map_err(|why| format!("field {:?}: {why}", f.name))?,
                                None if f.default.is_some() => {}
                                None => {
                                    return Err(format!(
                                        "field {:?} is missing and has no default",
                                        f.name
                                    ));
                                }
                            }
                        }
                        Ok(())
                    }
                }
            }
        }
    }

    /// A short human description of a node: `int`, `array`, `record com.acme.Order`.
    pub(crate) fn describe(&self, node: &Node) -> String {
        match node {
            Node::Primitive { kind, .. } => kind.name().to_owned(),
            Node::Array { .. } => "array".to_owned(),
            Node::Map { .. } => "map".to_owned(),
            Node::Union(_) => "union".to_owned(),
            Node::Named(i) => {
                let n = &self.named[*i];
                format!("{} {}", n.kind.type_name(), n.name.full())
            }
        }
    }
}

fn byte_string(value: &Value, size: Option<usize>) -> Result<(), String> {
    let Some(s) = value.as_str() else {
        return Err("a string of code points 0-255 (one per byte)".to_owned());
    };
    if s.chars().any(|c| u32::from(c) > 0xff) {
        return Err("a string of code points 0-255 (one per byte)".to_owned());
    }
    if let Some(size) = size {
        let n = s.chars().count();
        if n != size {
            return Err(format!("{size} bytes, got {n}"));
        }
    }
    Ok(())
}

fn parse_json(text: &str) -> PResult<Value> {
    serde_json::from_str(text).map_err(|e| {
        let hint = if e.to_string().contains("recursion limit") {
            " (schemas nest at most 128 JSON levels deep)"
        } else {
            ""
        };
        ParseError::invalid("", format!("not JSON: {e}{hint}"))
    })
}

fn doc_of(obj: &Map<String, Value>, at: &str) -> PResult<Option<String>> {
    match obj.get("doc") {
        None => Ok(None),
        Some(Value::String(d)) => Ok(Some(d.clone())),
        Some(other) => Err(ParseError::invalid(
            at,
            format!("\"doc\" must be a string, not {other}"),
        )),
    }
}

fn props(obj: &Map<String, Value>, reserved: &[&str]) -> Props {
    obj.iter()
        .filter(|(k, _)| !reserved.contains(&k.as_str()))
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect()
}

pub(crate) fn is_simple_name(s: &str) -> bool {
    let mut chars = s.chars();
    matches!(chars.next(), Some(c) if c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
}

fn validate_namespace(ns: &str, at: &str) -> PResult<()> {
    if ns.is_empty() || ns.split('.').all(is_simple_name) {
        Ok(())
    } else {
        Err(ParseError::invalid(
            at,
            format!("namespace {ns:?} is not a dotted sequence of Avro names"),
        ))
    }
}

/// Resolves `name` (simple, full, or `.Name` for the null namespace) against `ns`.
fn qualify(name: &str, ns: Option<&str>, at: &str) -> PResult<FullName> {
    let bad = || {
        ParseError::invalid(
            at,
            format!(
                "{name:?} is not a valid Avro name ([A-Za-z_][A-Za-z0-9_]*, dotted for a full name)"
            ),
        )
    };
    if let Some(simple) = name.strip_prefix('.') {
        return if is_simple_name(simple) {
            Ok(FullName {
                namespace: None,
                name: simple.to_owned(),
            })
        } else {
            Err(bad())
        };
    }
    match name.rsplit_once('.') {
        Some((space, simple)) => {
            if is_simple_name(simple) && space.split('.').all(is_simple_name) {
                Ok(FullName {
                    namespace: Some(space.to_owned()),
                    name: simple.to_owned(),
                })
            } else {
                Err(bad())
            }
        }
        None if is_simple_name(name) => Ok(FullName {
            namespace: ns.filter(|s| !s.is_empty()).map(str::to_owned),
            name: name.to_owned(),
        }),
        None => Err(bad()),
    }
}
