//! JSON Schema compatibility: can a reader schema accept every document a writer schema
//! accepts?
//!
//! Deciding that exactly is undecidable in general (schemas hold regular expressions,
//! negation and recursion), so this checker is *conservative*: it never calls a pair
//! compatible when a document valid under the writer could be refused by the reader, except
//! where Confluent's registry deliberately allows it too: a newly required property that has
//! a `default`, and `oneOf` read without its exclusivity (a document matching two of the
//! reader's branches). It may refuse pairs that are in fact compatible when it cannot prove
//! them so. The difference kinds and the open/closed content-model vocabulary follow
//! Confluent's JSON Schema diff. `tests/json_compat_soundness.rs` checks the claim against
//! the validator on generated schemas and documents.
//!
//! # Model
//! A schema position is a *conjunction* of facets: the schema object itself, what its
//! `$ref` points to (in drafts ≤ 7 instead of its siblings), and its `allOf` subschemas,
//! recursively. The writer's conjunction is expanded into disjuncts over its `anyOf`/`oneOf`
//! branches (`oneOf` read as `anyOf`: a superset, so still sound), capped at
//! [`MAX_DISJUNCTS`]. Each reader facet's assertions must then follow from the writer
//! disjunct: types ⊆, tighter-or-equal bounds, per-property schemas compared recursively,
//! and a reader `anyOf`/`oneOf` needs one branch that accepts the whole writer disjunct.
//! Writer constraints the checker does not model (`not`, `if`/`then`/`else`, …) are
//! ignored, which only makes the writer look larger: sound. Reader constraints it does not
//! model must be matched by an equal writer constraint, else they are reported.
//!
//! Recursion through `$ref` is cut by treating a (reader, writer) pair that is already being
//! compared as compatible (the co-inductive reading), and results are memoized per pair.

use std::collections::{BTreeSet, HashMap, HashSet};
use std::sync::LazyLock;

use jsonschema::Draft;
use referencing::Resolver;
use serde_json::{Map, Value};

use super::JsonSchema;
use crate::Incompatibility;

/// Most writer disjuncts (products of `anyOf`/`oneOf` branches) examined per position;
/// beyond it the remaining writer combinators are ignored (sound, less precise).
const MAX_DISJUNCTS: usize = 64;
/// Most nested comparisons on the stack; deeper pairs are reported, not assumed fine.
const MAX_COMPARE_DEPTH: usize = 64;
/// Most comparisons per check; a pathological pair is reported rather than ground through.
const MAX_COMPARISONS: usize = 50_000;

// JSON types as bits. NUMBER means numbers with a fractional part; "number" is NUMBER|INTEGER.
const NULL: u8 = 1;
const BOOLEAN: u8 = 2;
const OBJECT: u8 = 4;
const ARRAY: u8 = 8;
const NUMBER: u8 = 16;
const INTEGER: u8 = 32;
const STRING: u8 = 64;
const ALL_TYPES: u8 = 127;

static STRING_SCHEMA: LazyLock<Value> = LazyLock::new(|| serde_json::json!({"type": "string"}));

/// One schema per JSON type, to split a writer by type (`{"type": ["string", "null"]}` read
/// by `{"oneOf": [{"type": "string"}, {"type": "null"}]}`).
static TYPE_SCHEMAS: LazyLock<Vec<(u8, Value)>> = LazyLock::new(|| {
    [
        (NULL, "null"),
        (BOOLEAN, "boolean"),
        (OBJECT, "object"),
        (ARRAY, "array"),
        (NUMBER | INTEGER, "number"),
        (STRING, "string"),
    ]
    .into_iter()
    .map(|(bits, name)| (bits, serde_json::json!({ "type": name })))
    .collect()
});

pub(super) fn can_read(reader: &JsonSchema, writer: &JsonSchema) -> Vec<Incompatibility> {
    if reader.is_same(writer) {
        return Vec::new();
    }
    let reader_resolver = reader.registry().resolver(reader.base_uri().clone());
    let writer_resolver = writer.registry().resolver(writer.base_uri().clone());
    let r = Node {
        value: reader.root(),
        resolver: reader_resolver,
        draft: reader.draft(),
    };
    let w = Node {
        value: writer.root(),
        resolver: writer_resolver,
        draft: writer.draft(),
    };
    let mut checker = Checker::default();
    let found = checker.compare(&[r], &[w]);
    let mut seen = HashSet::new();
    found
        .into_iter()
        .filter(|i| seen.insert((i.kind, i.location.clone())))
        .map(|mut i| {
            i.location = if i.location.is_empty() {
                "#/".to_owned()
            } else {
                format!("#{}", i.location)
            };
            i
        })
        .collect()
}

/// A schema value with what is needed to resolve the `$ref`s inside it.
#[derive(Clone)]
struct Node<'r> {
    value: &'r Value,
    resolver: Resolver<'r>,
    draft: Draft,
}

impl<'r> Node<'r> {
    fn child(&self, value: &'r Value) -> Node<'r> {
        Node {
            value,
            resolver: self.resolver.clone(),
            draft: self.draft,
        }
    }
}

/// One schema object of a conjunction.
#[derive(Clone)]
struct Facet<'r> {
    node: Node<'r>,
    map: &'r Map<String, Value>,
    /// Its `anyOf`/`oneOf` were distributed into the disjunct (writer side only).
    split: bool,
}

impl<'r> Facet<'r> {
    /// The keyword's value, if the facet's draft knows the keyword (as the validator does:
    /// a `const` in a draft-04 schema constrains nothing).
    fn get(&self, keyword: &str) -> Option<&'r Value> {
        if known_keyword(self.node.draft, keyword) {
            self.map.get(keyword)
        } else {
            None
        }
    }

    fn child(&self, value: &'r Value) -> Node<'r> {
        self.node.child(value)
    }

    fn number(&self, keyword: &str) -> Option<f64> {
        self.get(keyword).and_then(Value::as_f64)
    }

    /// Whether the facet has in-place applicators whose evaluated properties/items an
    /// `unevaluated*` keyword would have to take into account.
    fn has_in_place_applicators(&self) -> bool {
        [
            "allOf",
            "anyOf",
            "oneOf",
            "$ref",
            "$dynamicRef",
            "$recursiveRef",
            "if",
            "dependentSchemas",
        ]
        .iter()
        .any(|k| self.map.contains_key(*k))
    }
}

/// A conjunction of facets: a document must satisfy every one.
#[derive(Clone, Default)]
struct Conj<'r> {
    facets: Vec<Facet<'r>>,
    /// A `false` schema is part of it: nothing satisfies it.
    never: bool,
    /// For writer disjuncts: which combinator branches it came from, e.g. `/oneOf/1`.
    branch: String,
    /// For writer disjuncts: how many branches the combinator that produced it had.
    branch_count: usize,
}

impl Conj<'_> {
    fn key(&self) -> Vec<usize> {
        let mut key: Vec<usize> = self
            .facets
            .iter()
            .map(|f| (f.map as *const Map<String, Value> as usize) | usize::from(f.split))
            .collect();
        key.sort_unstable();
        key.push(usize::from(self.never));
        key
    }
}

#[derive(Default)]
struct Checker {
    memo: HashMap<(Vec<usize>, Vec<usize>), Vec<Incompatibility>>,
    in_progress: HashSet<(Vec<usize>, Vec<usize>)>,
    depth: usize,
    comparisons: usize,
    regexes: HashMap<String, Option<fancy_regex::Regex>>,
}

fn inc(
    kind: &'static str,
    location: impl Into<String>,
    message: impl Into<String>,
) -> Incompatibility {
    Incompatibility {
        kind,
        location: location.into(),
        message: message.into(),
    }
}

fn escape(segment: &str) -> String {
    segment.replace('~', "~0").replace('/', "~1")
}

/// Prefixes relative locations with `prefix`.
fn rebase(found: Vec<Incompatibility>, prefix: &str) -> Vec<Incompatibility> {
    found
        .into_iter()
        .map(|mut i| {
            i.location = format!("{prefix}{}", i.location);
            i
        })
        .collect()
}

/// The first nested reason, to explain a content-model refusal in one sentence. Its location
/// is left out: nested locations are relative to different positions.
fn first_reason(found: &[Incompatibility]) -> String {
    found
        .first()
        .map(|i| format!(" ({}: {})", i.kind, i.message))
        .unwrap_or_default()
}

fn ptr_key(nodes: &[Node<'_>]) -> Vec<usize> {
    let mut key: Vec<usize> = nodes
        .iter()
        .map(|n| n.value as *const Value as usize)
        .collect();
    key.sort_unstable();
    key
}

fn type_bits(name: &str) -> u8 {
    match name {
        "null" => NULL,
        "boolean" => BOOLEAN,
        "object" => OBJECT,
        "array" => ARRAY,
        "number" => NUMBER | INTEGER,
        "integer" => INTEGER,
        "string" => STRING,
        _ => 0,
    }
}

fn type_names(bits: u8) -> String {
    let mut names = Vec::new();
    for (bit, name) in [
        (NULL, "null"),
        (BOOLEAN, "boolean"),
        (OBJECT, "object"),
        (ARRAY, "array"),
        (INTEGER, "integer"),
        (STRING, "string"),
    ] {
        if bits & bit != 0 {
            names.push(name);
        }
    }
    if bits & NUMBER != 0 {
        names.push("non-integer number");
    }
    names.join(", ")
}

fn value_type(value: &Value) -> u8 {
    match value {
        Value::Null => NULL,
        Value::Bool(_) => BOOLEAN,
        Value::Object(_) => OBJECT,
        Value::Array(_) => ARRAY,
        Value::String(_) => STRING,
        Value::Number(n) => {
            if n.is_i64() || n.is_u64() || n.as_f64().is_some_and(|f| f.fract() == 0.0) {
                INTEGER
            } else {
                NUMBER
            }
        }
    }
}

fn facet_types(facet: &Facet<'_>) -> u8 {
    match facet.get("type") {
        Some(Value::String(name)) => type_bits(name),
        Some(Value::Array(names)) => names
            .iter()
            .filter_map(Value::as_str)
            .map(type_bits)
            .fold(0, |a, b| a | b),
        _ => ALL_TYPES,
    }
}

/// JSON equality where `1` and `1.0` are the same number, as JSON Schema defines it.
fn json_eq(a: &Value, b: &Value) -> bool {
    match (a, b) {
        (Value::Number(x), Value::Number(y)) => {
            if let (Some(x), Some(y)) = (x.as_i64(), y.as_i64()) {
                x == y
            } else if let (Some(x), Some(y)) = (x.as_u64(), y.as_u64()) {
                x == y
            } else {
                x.as_f64() == y.as_f64()
            }
        }
        (Value::Array(x), Value::Array(y)) => {
            x.len() == y.len() && x.iter().zip(y).all(|(a, b)| json_eq(a, b))
        }
        (Value::Object(x), Value::Object(y)) => {
            x.len() == y.len()
                && x.iter()
                    .all(|(k, v)| y.get(k).is_some_and(|w| json_eq(v, w)))
        }
        _ => a == b,
    }
}

/// The values a facet allows through `enum`/`const`, if it restricts them.
fn facet_values<'r>(facet: &Facet<'r>) -> Option<Vec<&'r Value>> {
    let mut values: Option<Vec<&Value>> = facet
        .get("enum")
        .and_then(Value::as_array)
        .map(|a| a.iter().collect());
    if let Some(c) = facet.get("const") {
        values = Some(match values {
            Some(v) => v.into_iter().filter(|x| json_eq(x, c)).collect(),
            None => vec![c],
        });
    }
    values
}

fn is_integer(x: f64) -> bool {
    (x - x.round()).abs() <= 1e-9 * x.abs().max(1.0)
}

fn string_set(value: Option<&Value>) -> BTreeSet<&str> {
    value
        .and_then(Value::as_array)
        .map(|a| a.iter().filter_map(Value::as_str).collect())
        .unwrap_or_default()
}

/// A numeric bound: `value`, exclusive or not.
#[derive(Clone, Copy)]
struct Bound {
    value: f64,
    exclusive: bool,
    keyword: &'static str,
}

impl Bound {
    /// For integer-only writers: the equivalent inclusive integer bound.
    fn to_integer(self, upper: bool) -> Bound {
        let value = match (upper, self.exclusive) {
            (true, true) => self.value.ceil() - 1.0,
            (true, false) => self.value.floor(),
            (false, true) => self.value.floor() + 1.0,
            (false, false) => self.value.ceil(),
        };
        Bound {
            value,
            exclusive: false,
            keyword: self.keyword,
        }
    }
}

fn upper_bounds(facet: &Facet<'_>) -> Vec<Bound> {
    let mut bounds = Vec::new();
    let draft4_exclusive = facet.get("exclusiveMaximum").and_then(Value::as_bool);
    if let Some(m) = facet.number("maximum") {
        let exclusive = draft4_exclusive == Some(true);
        bounds.push(Bound {
            value: m,
            exclusive,
            keyword: if exclusive {
                "exclusiveMaximum"
            } else {
                "maximum"
            },
        });
    }
    if let Some(m) = facet.number("exclusiveMaximum") {
        bounds.push(Bound {
            value: m,
            exclusive: true,
            keyword: "exclusiveMaximum",
        });
    }
    bounds
}

fn lower_bounds(facet: &Facet<'_>) -> Vec<Bound> {
    let mut bounds = Vec::new();
    let draft4_exclusive = facet.get("exclusiveMinimum").and_then(Value::as_bool);
    if let Some(m) = facet.number("minimum") {
        let exclusive = draft4_exclusive == Some(true);
        bounds.push(Bound {
            value: m,
            exclusive,
            keyword: if exclusive {
                "exclusiveMinimum"
            } else {
                "minimum"
            },
        });
    }
    if let Some(m) = facet.number("exclusiveMinimum") {
        bounds.push(Bound {
            value: m,
            exclusive: true,
            keyword: "exclusiveMinimum",
        });
    }
    bounds
}

/// Whether bound `w` (the writer's) is at least as tight as `r` (the reader's).
fn within(w: Bound, r: Bound, upper: bool) -> bool {
    if w.value == r.value {
        w.exclusive || !r.exclusive
    } else if upper {
        w.value < r.value
    } else {
        w.value > r.value
    }
}

fn tightest(bounds: impl Iterator<Item = Bound>, upper: bool) -> Option<Bound> {
    bounds.reduce(|a, b| if within(a, b, upper) { a } else { b })
}

/// The tuple model of an array facet: explicit positions, then the schema of the rest.
struct Tuple<'r> {
    prefix: Vec<&'r Value>,
    prefix_keyword: &'static str,
    rest: Option<&'r Value>,
    rest_keyword: &'static str,
}

fn tuple<'r>(facet: &Facet<'r>) -> Tuple<'r> {
    let (prefix, prefix_keyword, mut rest, rest_keyword) = if facet.node.draft == Draft::Draft202012
    {
        (
            facet.get("prefixItems").and_then(Value::as_array),
            "prefixItems",
            facet.get("items"),
            "items",
        )
    } else {
        match facet.get("items") {
            Some(Value::Array(items)) => (
                Some(items),
                "items",
                facet.get("additionalItems"),
                "additionalItems",
            ),
            other => (None, "items", other, "items"),
        }
    };
    if rest.is_none() && !facet.has_in_place_applicators() {
        rest = facet.get("unevaluatedItems");
    }
    Tuple {
        prefix: prefix.map(|p| p.iter().collect()).unwrap_or_default(),
        prefix_keyword,
        rest,
        rest_keyword,
    }
}

fn contains_false(nodes: &[Node<'_>]) -> bool {
    nodes.iter().any(|n| n.value == &Value::Bool(false))
}

impl Checker {
    /// Why a document valid under every one of `writer` may fail one of `reader`; locations
    /// are relative to the compared position.
    fn compare<'r>(&mut self, reader: &[Node<'r>], writer: &[Node<'r>]) -> Vec<Incompatibility> {
        let key = (ptr_key(reader), ptr_key(writer));
        if let Some(found) = self.memo.get(&key) {
            return found.clone();
        }
        if let Some(refused) = self.enter(&key) {
            return refused;
        }
        let r = self.flatten(reader);
        let w = self.flatten(writer);
        let mut found = Vec::new();
        for disjunct in self.disjuncts(w) {
            found.extend(self.check(&r, &disjunct));
        }
        self.leave(key, &found);
        found
    }

    /// As [`Checker::compare`], against one already expanded writer disjunct.
    fn compare_with<'r>(&mut self, reader: &[Node<'r>], writer: &Conj<'r>) -> Vec<Incompatibility> {
        let key = (ptr_key(reader), writer.key());
        if let Some(found) = self.memo.get(&key) {
            return found.clone();
        }
        if let Some(refused) = self.enter(&key) {
            return refused;
        }
        let r = self.flatten(reader);
        let found = self.check(&r, writer);
        self.leave(key, &found);
        found
    }

    fn enter(&mut self, key: &(Vec<usize>, Vec<usize>)) -> Option<Vec<Incompatibility>> {
        if self.in_progress.contains(key) {
            // Recursive schemas: a pair met again while being compared is assumed to hold;
            // any real difference is found on the way down.
            return Some(Vec::new());
        }
        self.comparisons += 1;
        if self.depth >= MAX_COMPARE_DEPTH || self.comparisons > MAX_COMPARISONS {
            return Some(vec![inc(
                "SCHEMA_TOO_COMPLEX",
                "",
                "the schemas nest or branch too much to be compared; simplify them or register with compatibility NONE",
            )]);
        }
        self.in_progress.insert(key.clone());
        self.depth += 1;
        None
    }

    fn leave(&mut self, key: (Vec<usize>, Vec<usize>), found: &[Incompatibility]) {
        self.depth -= 1;
        self.in_progress.remove(&key);
        self.memo.insert(key, found.to_vec());
    }

    fn flatten<'r>(&mut self, nodes: &[Node<'r>]) -> Conj<'r> {
        let mut conj = Conj::default();
        let mut visited = HashSet::new();
        for node in nodes {
            add_facets(node.clone(), &mut conj, &mut visited, 0);
        }
        conj
    }

    /// Expands the writer's `anyOf`/`oneOf` branches into disjuncts.
    fn disjuncts<'r>(&mut self, conj: Conj<'r>) -> Vec<Conj<'r>> {
        let mut done = Vec::new();
        let mut work = vec![conj];
        while let Some(mut c) = work.pop() {
            let Some(i) = c.facets.iter().position(|f| {
                !f.split && (f.map.contains_key("anyOf") || f.map.contains_key("oneOf"))
            }) else {
                done.push(c);
                continue;
            };
            c.facets[i].split = true;
            let facet = c.facets[i].clone();
            let mut expanded = vec![c];
            for keyword in ["anyOf", "oneOf"] {
                let Some(branches) = facet.get(keyword).and_then(Value::as_array) else {
                    continue;
                };
                if done.len() + work.len() + expanded.len() * branches.len() > MAX_DISJUNCTS {
                    // Too many: leave the rest of the writer's branches out (the writer
                    // then looks larger than it is, which can only add false alarms).
                    continue;
                }
                let mut next = Vec::new();
                for base in &expanded {
                    for (index, branch) in branches.iter().enumerate() {
                        let mut d = base.clone();
                        d.branch = format!("{}/{keyword}/{index}", d.branch);
                        d.branch_count = branches.len();
                        let mut visited = HashSet::new();
                        add_facets(facet.child(branch), &mut d, &mut visited, 0);
                        next.push(d);
                    }
                }
                expanded = next;
            }
            work.extend(expanded);
        }
        done
    }

    fn regex(&mut self, pattern: &str) -> Option<&fancy_regex::Regex> {
        self.regexes
            .entry(pattern.to_owned())
            .or_insert_with(|| fancy_regex::Regex::new(pattern).ok())
            .as_ref()
    }

    fn matches(&mut self, pattern: &str, name: &str) -> bool {
        // An uncompilable pattern (the validator accepted it, fancy-regex may not) is taken
        // to match: on the reader side that is the stricter reading.
        match self.regex(pattern) {
            Some(re) => re.is_match(name).unwrap_or(true),
            None => true,
        }
    }

    /// The schemas `conj` applies to property `name`, and whether one of its facets declares
    /// `name` in `properties`. An empty list means no facet constrains the property (open).
    /// On the writer side (`writer`), an `unevaluatedProperties` that provably governs `name`
    /// counts too; on the reader side it is checked on its own (`check_unevaluated_properties`).
    fn property_schemas<'r>(
        &mut self,
        conj: &Conj<'r>,
        name: &str,
        writer: bool,
    ) -> (Vec<Node<'r>>, bool) {
        let mut nodes = Vec::new();
        let mut declared = false;
        for facet in &conj.facets {
            // `properties` and every matching `patternProperties` apply together;
            // `additionalProperties` only when neither does.
            let mut matched = false;
            if let Some(schema) = facet
                .get("properties")
                .and_then(Value::as_object)
                .and_then(|p| p.get(name))
            {
                declared = true;
                matched = true;
                nodes.push(facet.child(schema));
            }
            if let Some(patterns) = facet.get("patternProperties").and_then(Value::as_object) {
                for (pattern, schema) in patterns {
                    if self.matches(pattern, name) {
                        matched = true;
                        nodes.push(facet.child(schema));
                    }
                }
            }
            if !matched {
                match additional(facet) {
                    Some(node) => nodes.push(node),
                    None if writer => {
                        nodes.extend(self.writer_unevaluated(facet, Some(name), None))
                    }
                    None => {}
                }
            }
        }
        (nodes, declared)
    }

    /// The writer's `unevaluatedProperties` of a facet with in-place applicators, when it
    /// governs `name` (or, with `None`, every name outside `known`). Only when the facet's
    /// subtree bounds what it evaluates: no `$ref`, no nested `additionalProperties` or
    /// `unevaluatedProperties`; for `None`, no `patternProperties` and no name outside
    /// `known` either. Otherwise the writer is taken as open there, the larger reading.
    fn writer_unevaluated<'r>(
        &mut self,
        facet: &Facet<'r>,
        name: Option<&str>,
        known: Option<&BTreeSet<&str>>,
    ) -> Option<Node<'r>> {
        let u = facet.get("unevaluatedProperties")?;
        if facet.map.contains_key("additionalProperties") || !facet.has_in_place_applicators() {
            return None;
        }
        let mut names = BTreeSet::new();
        let mut patterns = Vec::new();
        if !subtree_evaluates(facet.map, &mut names, &mut patterns, 0) {
            return None;
        }
        match name {
            Some(name) => {
                if names.contains(name) {
                    return None;
                }
                for pattern in patterns {
                    if self.matches(pattern, name) {
                        return None;
                    }
                }
            }
            None => {
                if !patterns.is_empty() || !known.is_some_and(|k| names.is_subset(k)) {
                    return None;
                }
            }
        }
        Some(facet.child(u))
    }

    /// What the writer applies to property names neither side declares.
    fn writer_additional<'r>(&mut self, r: &Conj<'r>, w: &Conj<'r>) -> Vec<Node<'r>> {
        let known = declared_names(r, w);
        let mut nodes = Vec::new();
        for facet in &w.facets {
            match additional(facet) {
                Some(node) => nodes.push(node),
                None => nodes.extend(self.writer_unevaluated(facet, None, Some(&known))),
            }
        }
        nodes
    }

    /// Checks one reader conjunction against one writer disjunct.
    fn check<'r>(&mut self, r: &Conj<'r>, w: &Conj<'r>) -> Vec<Incompatibility> {
        let mut out = Vec::new();
        if w.never {
            return out;
        }
        let writer_types = w
            .facets
            .iter()
            .map(facet_types)
            .fold(ALL_TYPES, |a, b| a & b);
        // The writer's enum/const values, less those its own scalar constraints refuse.
        let writer_values = writer_values(w, writer_types).map(|values| {
            values
                .into_iter()
                .filter(|v| {
                    let mut refused = Vec::new();
                    match v {
                        Value::String(s) => self.check_string_value(w, s, &mut refused),
                        Value::Number(n) => {
                            if let Some(x) = n.as_f64() {
                                check_number_value(w, x, &mut refused);
                            }
                        }
                        _ => {}
                    }
                    refused.is_empty()
                })
                .collect::<Vec<_>>()
        });
        let writer_types = match &writer_values {
            Some(values) => {
                values.iter().map(|v| value_type(v)).fold(0, |a, b| a | b) & writer_types
            }
            None => writer_types,
        };
        if writer_types == 0 {
            // The writer accepts nothing (contradictory types or an empty enum).
            return out;
        }
        if r.never {
            out.push(inc(
                "TYPE_CHANGED",
                "",
                "the reader schema is false here and refuses everything the writer may write",
            ));
            return out;
        }
        let reader_types = r
            .facets
            .iter()
            .map(facet_types)
            .fold(ALL_TYPES, |a, b| a & b);
        let refused = writer_types & !reader_types;
        if refused != 0 {
            let kind = if writer_types & reader_types == 0 {
                "TYPE_CHANGED"
            } else {
                "TYPE_NARROWED"
            };
            out.push(inc(
                kind,
                "",
                format!(
                    "the writer may write {} values which the reader's type refuses (it accepts {})",
                    type_names(refused),
                    if reader_types == 0 {
                        "nothing".to_owned()
                    } else {
                        type_names(reader_types)
                    }
                ),
            ));
        }
        let types = writer_types & reader_types;
        if types == 0 {
            return out;
        }

        self.check_values(r, writer_values.as_deref(), types, &mut out);
        if types & STRING != 0 {
            // Known writer values had their lengths and patterns checked one by one; formats
            // and content encodings cannot be evaluated here, so they are compared anyway.
            check_strings(r, w, writer_values.is_some(), &mut out);
        }
        if writer_values.is_none() && types & (NUMBER | INTEGER) != 0 {
            check_numbers(r, w, types & NUMBER == 0, &mut out);
        }
        if types & OBJECT != 0 {
            self.check_objects(r, w, &mut out);
        }
        if types & ARRAY != 0 {
            self.check_arrays(r, w, &mut out);
        }
        self.check_applicators(r, w, writer_types, &mut out);
        out
    }

    /// `enum`/`const` of the reader, and, when the writer's values are a known finite set,
    /// the reader's scalar constraints evaluated on each of them.
    fn check_values<'r>(
        &mut self,
        r: &Conj<'r>,
        writer_values: Option<&[&'r Value]>,
        types: u8,
        out: &mut Vec<Incompatibility>,
    ) {
        for facet in &r.facets {
            let Some(allowed) = facet_values(facet) else {
                continue;
            };
            let keyword = if facet.get("enum").is_some() {
                "enum"
            } else {
                "const"
            };
            match writer_values {
                None => out.push(inc(
                    if keyword == "enum" {
                        "ENUM_ARRAY_NARROWED"
                    } else {
                        "CONST_ADDED"
                    },
                    format!("/{keyword}"),
                    format!("the reader restricts values with {keyword} but the writer does not"),
                )),
                Some(values) => {
                    let missing: Vec<String> = values
                        .iter()
                        .filter(|v| value_type(v) & types != 0)
                        .filter(|v| !allowed.iter().any(|a| json_eq(a, v)))
                        .map(|v| v.to_string())
                        .collect();
                    if !missing.is_empty() {
                        let narrowed = allowed.iter().all(|a| values.iter().any(|v| json_eq(a, v)));
                        let kind = match (keyword, narrowed) {
                            ("enum", true) => "ENUM_ARRAY_NARROWED",
                            ("enum", false) => "ENUM_ARRAY_CHANGED",
                            _ => "CONST_CHANGED",
                        };
                        out.push(inc(
                            kind,
                            format!("/{keyword}"),
                            format!(
                                "the writer may write {} which the reader's {keyword} does not allow",
                                missing.join(", ")
                            ),
                        ));
                    }
                }
            }
        }
        let Some(values) = writer_values else { return };
        for value in values {
            match value {
                Value::String(s) => self.check_string_value(r, s, out),
                Value::Number(n) => {
                    if let Some(x) = n.as_f64() {
                        check_number_value(r, x, out);
                    }
                }
                _ => {}
            }
        }
    }

    fn check_string_value(&mut self, r: &Conj<'_>, s: &str, out: &mut Vec<Incompatibility>) {
        let length = s.chars().count() as f64;
        for facet in &r.facets {
            if let Some(max) = facet.number("maxLength").filter(|m| length > *m) {
                out.push(inc(
                    "MAX_LENGTH_DECREASED",
                    "/maxLength",
                    format!("the writer's value {s:?} is longer than the reader's maxLength {max}"),
                ));
            }
            if let Some(min) = facet.number("minLength").filter(|m| length < *m) {
                out.push(inc(
                    "MIN_LENGTH_INCREASED",
                    "/minLength",
                    format!(
                        "the writer's value {s:?} is shorter than the reader's minLength {min}"
                    ),
                ));
            }
            if let Some(pattern) = facet.get("pattern").and_then(Value::as_str) {
                let ok = match self.regex(pattern) {
                    Some(re) => re.is_match(s).unwrap_or(false),
                    None => false,
                };
                if !ok {
                    out.push(inc(
                        "PATTERN_CHANGED",
                        "/pattern",
                        format!("the writer's value {s:?} does not match the reader's pattern {pattern:?}"),
                    ));
                }
            }
        }
    }

    fn check_objects<'r>(&mut self, r: &Conj<'r>, w: &Conj<'r>, out: &mut Vec<Incompatibility>) {
        // Properties either side declares.
        let mut names = BTreeSet::new();
        for facet in r.facets.iter().chain(&w.facets) {
            if let Some(p) = facet.get("properties").and_then(Value::as_object) {
                names.extend(p.keys().map(String::as_str));
            }
        }
        for name in names {
            let (rn, r_declared) = self.property_schemas(r, name, false);
            let (wn, w_declared) = self.property_schemas(w, name, true);
            let location = format!("/properties/{}", escape(name));
            let found = self.compare(&rn, &wn);
            if found.is_empty() {
                continue;
            }
            let found = rebase(found, &location);
            match (w_declared, r_declared) {
                (true, false) if contains_false(&rn) => out.push(inc(
                    "PROPERTY_REMOVED_FROM_CLOSED_CONTENT_MODEL",
                    location,
                    format!("the reader has a closed content model and no longer allows property {name:?}, which the writer may write"),
                )),
                (true, false) => {
                    out.push(inc(
                        "PROPERTY_REMOVED_NOT_COVERED_BY_PARTIALLY_OPEN_CONTENT_MODEL",
                        location,
                        format!("property {name:?} is gone from the reader and its additionalProperties/patternProperties do not accept what the writer writes there{}", first_reason(&found)),
                    ));
                    out.extend(found);
                }
                (false, true) if wn.is_empty() => out.push(inc(
                    "PROPERTY_ADDED_TO_OPEN_CONTENT_MODEL",
                    location,
                    format!("the reader adds property {name:?} with a schema, but the writer has an open content model and may already write any value under that name{}", first_reason(&found)),
                )),
                (false, true) => {
                    out.push(inc(
                        "PROPERTY_ADDED_NOT_COVERED_BY_PARTIALLY_OPEN_CONTENT_MODEL",
                        location,
                        format!("the reader adds property {name:?}, but the writer's additionalProperties/patternProperties allow values there that the reader refuses{}", first_reason(&found)),
                    ));
                    out.extend(found);
                }
                _ => out.extend(found),
            }
        }

        // Required properties.
        let reader_required: BTreeSet<&str> = r
            .facets
            .iter()
            .flat_map(|f| string_set(f.get("required")))
            .collect();
        let writer_required: BTreeSet<&str> = w
            .facets
            .iter()
            .flat_map(|f| string_set(f.get("required")))
            .collect();
        for name in reader_required.difference(&writer_required) {
            let (rn, _) = self.property_schemas(r, name, false);
            let has_default = rn.iter().any(|n| {
                let mut c = Conj::default();
                add_facets(n.clone(), &mut c, &mut HashSet::new(), 0);
                c.facets.iter().any(|f| f.map.contains_key("default"))
            });
            if has_default {
                // Confluent's rule: a required property with a default is a compatible
                // addition (REQUIRED_ATTRIBUTE_WITH_DEFAULT_ADDED).
                continue;
            }
            let (wn, _) = self.property_schemas(w, name, true);
            let mut wc = Conj::default();
            for n in &wn {
                add_facets(n.clone(), &mut wc, &mut HashSet::new(), 0);
            }
            if wc.never {
                out.push(inc(
                    "REQUIRED_PROPERTY_ADDED_TO_UNOPEN_CONTENT_MODEL",
                    format!("/properties/{}", escape(name)),
                    format!("the reader requires property {name:?}, which the writer's closed content model never writes"),
                ));
            } else {
                out.push(inc(
                    "REQUIRED_ATTRIBUTE_ADDED",
                    format!("/required/{}", escape(name)),
                    format!(
                        "the reader requires property {name:?}, which the writer does not require"
                    ),
                ));
            }
        }

        self.check_pattern_properties(r, w, out);

        // Everything else: additionalProperties against additionalProperties.
        let ra: Vec<Node<'r>> = r.facets.iter().flat_map(additional).collect();
        if !ra.is_empty() {
            let wa: Vec<Node<'r>> = self.writer_additional(r, w);
            let found = self.compare(&ra, &wa);
            if !found.is_empty() {
                if contains_false(&ra) {
                    out.push(inc(
                        "ADDITIONAL_PROPERTIES_REMOVED",
                        "/additionalProperties",
                        "the reader closes its content model (additionalProperties false) while the writer may write other properties",
                    ));
                } else if wa.is_empty() {
                    out.push(inc(
                        "ADDITIONAL_PROPERTIES_NARROWED",
                        "/additionalProperties",
                        format!("the reader constrains additional properties that the writer leaves open{}", first_reason(&found)),
                    ));
                } else {
                    out.extend(rebase(found, "/additionalProperties"));
                }
            }
        }

        self.check_unevaluated_properties(r, w, out);

        check_counts(
            r,
            w,
            "maxProperties",
            "minProperties",
            "MAX_PROPERTIES",
            "MIN_PROPERTIES",
            writer_required.len() as f64,
            out,
        );
        self.check_dependencies(r, w, &writer_required, out);

        // propertyNames: the writer's names are strings meeting its own propertyNames.
        for facet in &r.facets {
            let Some(names) = facet.get("propertyNames") else {
                continue;
            };
            let mut wn: Vec<Node<'r>> = w
                .facets
                .iter()
                .filter_map(|f| f.get("propertyNames").map(|v| f.child(v)))
                .collect();
            if let Some(first) = w.facets.first() {
                wn.push(first.child(&STRING_SCHEMA));
            }
            let found = self.compare(&[facet.child(names)], &wn);
            out.extend(rebase(found, "/propertyNames"));
        }
    }

    /// unevaluatedProperties on a facet with in-place applicators (without them it acts as
    /// additionalProperties, above): names the facet and the subschemas it always applies
    /// (allOf, $ref) do not evaluate fall to it. Names evaluated only by anyOf/oneOf/if
    /// branches are counted as unevaluated, the stricter reading.
    fn check_unevaluated_properties<'r>(
        &mut self,
        r: &Conj<'r>,
        w: &Conj<'r>,
        out: &mut Vec<Incompatibility>,
    ) {
        for facet in &r.facets {
            let Some(u) = facet.get("unevaluatedProperties") else {
                continue;
            };
            if u == &Value::Bool(true) || !facet.has_in_place_applicators() {
                continue;
            }
            let mut applied = Conj::default();
            add_facets(facet.node.clone(), &mut applied, &mut HashSet::new(), 0);
            if applied
                .facets
                .iter()
                .any(|f| f.map.contains_key("additionalProperties"))
            {
                continue;
            }
            let evaluated: BTreeSet<&str> = applied
                .facets
                .iter()
                .filter_map(|f| f.get("properties").and_then(Value::as_object))
                .flat_map(|p| p.keys().map(String::as_str))
                .collect();
            let evaluated_patterns: BTreeSet<&str> = applied
                .facets
                .iter()
                .filter_map(|f| f.get("patternProperties").and_then(Value::as_object))
                .flat_map(|p| p.keys().map(String::as_str))
                .collect();
            let unevaluated = [facet.child(u)];
            let mut found = Vec::new();
            let mut writer_names = BTreeSet::new();
            for wf in &w.facets {
                if let Some(p) = wf.get("properties").and_then(Value::as_object) {
                    writer_names.extend(p.keys().map(String::as_str));
                }
                // Names the writer declares only under a condition may be written too.
                let conditional = ["then", "else"].iter().filter_map(|k| wf.get(k)).chain(
                    wf.get("dependentSchemas")
                        .and_then(Value::as_object)
                        .into_iter()
                        .flat_map(|d| d.values()),
                );
                for schema in conditional {
                    if let Some(p) = schema.get("properties").and_then(Value::as_object) {
                        writer_names.extend(p.keys().map(String::as_str));
                    }
                }
            }
            for name in writer_names.difference(&evaluated) {
                let mut matched = false;
                for pattern in &evaluated_patterns {
                    matched |= self.matches(pattern, name);
                }
                if matched {
                    continue;
                }
                let (wn, _) = self.property_schemas(w, name, true);
                found.extend(self.compare(&unevaluated, &wn));
            }
            for wf in &w.facets {
                if let Some(p) = wf.get("patternProperties").and_then(Value::as_object) {
                    for (pattern, schema) in p {
                        if !evaluated_patterns.contains(pattern.as_str()) {
                            found.extend(self.compare(&unevaluated, &[wf.child(schema)]));
                        }
                    }
                }
            }
            // Other names: the writer's additionalProperties, or its own unevaluatedProperties
            // where that provably closes it.
            let wa: Vec<Node<'r>> = self.writer_additional(r, w);
            found.extend(self.compare(&unevaluated, &wa));
            if !found.is_empty() {
                out.push(inc(
                    if u == &Value::Bool(false) {
                        "UNEVALUATED_PROPERTIES_REMOVED"
                    } else {
                        "UNEVALUATED_PROPERTIES_NARROWED"
                    },
                    "/unevaluatedProperties",
                    format!(
                        "the reader's unevaluatedProperties refuses properties the writer may write{}",
                        first_reason(&found)
                    ),
                ));
            }
        }
    }

    fn check_pattern_properties<'r>(
        &mut self,
        r: &Conj<'r>,
        w: &Conj<'r>,
        out: &mut Vec<Incompatibility>,
    ) {
        let patterns = |c: &Conj<'r>| -> Vec<(&'r str, Node<'r>)> {
            c.facets
                .iter()
                .filter_map(|f| {
                    f.get("patternProperties")
                        .and_then(Value::as_object)
                        .map(|p| (f, p))
                })
                .flat_map(|(f, p)| p.iter().map(move |(k, v)| (k.as_str(), f.child(v))))
                .collect()
        };
        let rp = patterns(r);
        let wp = patterns(w);
        for (pattern, schema) in &rp {
            let location = format!("/patternProperties/{}", escape(pattern));
            let same: Vec<Node<'r>> = wp
                .iter()
                .filter(|(p, _)| p == pattern)
                .map(|(_, n)| n.clone())
                .collect();
            if !same.is_empty() {
                let found = self.compare(std::slice::from_ref(schema), &same);
                out.extend(rebase(found, &location));
                continue;
            }
            // Names matching a new reader pattern fall under the writer's additionalProperties,
            // or under a writer pattern that may match the same names.
            let wa: Vec<Node<'r>> = self.writer_additional(r, w);
            let mut found = self.compare(std::slice::from_ref(schema), &wa);
            let overlapping: Vec<Node<'r>> = wp
                .iter()
                .filter(|(p, _)| may_overlap(p, pattern))
                .map(|(_, n)| n.clone())
                .collect();
            for writer_schema in overlapping {
                found.extend(self.compare(std::slice::from_ref(schema), &[writer_schema]));
            }
            if found.is_empty() {
                continue;
            }
            if wa.is_empty() {
                out.push(inc(
                    "PATTERN_PROPERTY_ADDED_TO_OPEN_CONTENT_MODEL",
                    location,
                    format!("the reader constrains properties matching {pattern:?}, which the writer's open content model may write with any value{}", first_reason(&found)),
                ));
            } else {
                out.push(inc(
                    "PATTERN_PROPERTY_ADDED_NOT_COVERED_BY_PARTIALLY_OPEN_CONTENT_MODEL",
                    location.clone(),
                    format!("the reader constrains properties matching {pattern:?} more than the writer's additionalProperties{}", first_reason(&found)),
                ));
                out.extend(rebase(found, &location));
            }
        }
        for (pattern, schema) in &wp {
            if rp.iter().any(|(p, _)| p == pattern) {
                continue;
            }
            let location = format!("/patternProperties/{}", escape(pattern));
            // Names a reader pattern surely matches are its business, not additionalProperties'.
            let covering: Vec<Node<'r>> = rp
                .iter()
                .filter(|(p, _)| covers(p, pattern))
                .map(|(_, n)| n.clone())
                .collect();
            if !covering.is_empty() {
                let found = self.compare(&covering, std::slice::from_ref(schema));
                out.extend(rebase(found, &location));
                continue;
            }
            let ra: Vec<Node<'r>> = r.facets.iter().flat_map(additional).collect();
            let found = self.compare(&ra, std::slice::from_ref(schema));
            if found.is_empty() {
                continue;
            }
            if contains_false(&ra) {
                out.push(inc(
                    "PATTERN_PROPERTY_REMOVED_FROM_CLOSED_CONTENT_MODEL",
                    location,
                    format!("the writer may write properties matching {pattern:?}, which the reader's closed content model refuses"),
                ));
            } else {
                out.push(inc(
                    "PATTERN_PROPERTY_REMOVED_NOT_COVERED_BY_PARTIALLY_OPEN_CONTENT_MODEL",
                    location.clone(),
                    format!("the writer may write properties matching {pattern:?} that the reader's additionalProperties refuses{}", first_reason(&found)),
                ));
                out.extend(rebase(found, &location));
            }
        }
    }

    fn check_dependencies<'r>(
        &mut self,
        r: &Conj<'r>,
        w: &Conj<'r>,
        writer_required: &BTreeSet<&str>,
        out: &mut Vec<Incompatibility>,
    ) {
        let dependency_maps = |f: &Facet<'r>| -> Vec<(&'static str, &'r Map<String, Value>)> {
            ["dependencies", "dependentRequired", "dependentSchemas"]
                .iter()
                .filter_map(|k| f.get(k).and_then(Value::as_object).map(|m| (*k, m)))
                .collect()
        };
        for facet in &r.facets {
            for (keyword, deps) in dependency_maps(facet) {
                for (property, dep) in deps {
                    let location = format!("/{keyword}/{}", escape(property));
                    // A property the writer never writes triggers nothing.
                    let (wn, _) = self.property_schemas(w, property, true);
                    let mut wc = Conj::default();
                    for n in &wn {
                        add_facets(n.clone(), &mut wc, &mut HashSet::new(), 0);
                    }
                    if wc.never {
                        continue;
                    }
                    if let Value::Array(_) = dep {
                        let needed = string_set(Some(dep));
                        let mut writer_has: Option<BTreeSet<&str>> = None;
                        for wf in &w.facets {
                            for (_, wdeps) in dependency_maps(wf) {
                                if let Some(list @ Value::Array(_)) = wdeps.get(property) {
                                    writer_has
                                        .get_or_insert_with(BTreeSet::new)
                                        .extend(string_set(Some(list)));
                                }
                            }
                        }
                        let missing: Vec<&str> = needed
                            .iter()
                            .filter(|n| {
                                !writer_required.contains(*n)
                                    && !writer_has.as_ref().is_some_and(|h| h.contains(*n))
                            })
                            .copied()
                            .collect();
                        if missing.is_empty() {
                            continue;
                        }
                        let kind = match &writer_has {
                            None => "DEPENDENCY_ARRAY_ADDED",
                            Some(has) if has.is_subset(&needed) => "DEPENDENCY_ARRAY_EXTENDED",
                            Some(_) => "DEPENDENCY_ARRAY_CHANGED",
                        };
                        out.push(inc(
                            kind,
                            location,
                            format!(
                                "when {property:?} is present the reader also requires {}, which the writer does not guarantee",
                                missing.join(", ")
                            ),
                        ));
                    } else {
                        // A dependent schema: when the property is present, the writer's
                        // document (and its own dependent schema, if any) must satisfy it.
                        let mut writer_nodes: Vec<Node<'r>> =
                            w.facets.iter().map(|f| f.node.clone()).collect();
                        let mut writer_had = false;
                        for wf in &w.facets {
                            for (_, wdeps) in dependency_maps(wf) {
                                if let Some(s) = wdeps.get(property).filter(|s| !s.is_array()) {
                                    writer_had = true;
                                    writer_nodes.push(wf.child(s));
                                }
                            }
                        }
                        let found = self.compare(&[facet.child(dep)], &writer_nodes);
                        if found.is_empty() {
                            continue;
                        }
                        if writer_had {
                            out.extend(rebase(found, &location));
                        } else {
                            out.push(inc(
                                "DEPENDENCY_SCHEMA_ADDED",
                                location,
                                format!("when {property:?} is present the reader applies a schema the writer's documents may not meet{}", first_reason(&found)),
                            ));
                        }
                    }
                }
            }
        }
    }

    fn check_arrays<'r>(&mut self, r: &Conj<'r>, w: &Conj<'r>, out: &mut Vec<Incompatibility>) {
        let rt: Vec<(Tuple<'r>, &Facet<'r>)> = r.facets.iter().map(|f| (tuple(f), f)).collect();
        let wt: Vec<(Tuple<'r>, &Facet<'r>)> =
            w.facets.iter().map(|f| (writer_tuple(f), f)).collect();
        let positions = rt
            .iter()
            .chain(&wt)
            .map(|(t, _)| t.prefix.len())
            .max()
            .unwrap_or(0);
        // Positions at or past the writer's maxItems are never written.
        let writer_max = w
            .facets
            .iter()
            .filter_map(|f| f.number("maxItems"))
            .reduce(f64::min);
        let at = |tuples: &[(Tuple<'r>, &Facet<'r>)], i: usize| -> (Vec<Node<'r>>, bool) {
            let mut nodes = Vec::new();
            let mut declared = false;
            for (t, f) in tuples {
                if let Some(v) = t.prefix.get(i) {
                    declared = true;
                    nodes.push(f.child(v));
                } else if let Some(v) = t.rest {
                    nodes.push(f.child(v));
                }
            }
            (nodes, declared)
        };
        let prefix_keyword = rt
            .iter()
            .chain(&wt)
            .find(|(t, _)| !t.prefix.is_empty())
            .map_or("items", |(t, _)| t.prefix_keyword);
        for i in 0..positions {
            if writer_max.is_some_and(|m| (i as f64) >= m) {
                break;
            }
            let (rn, r_declared) = at(&rt, i);
            let (wn, w_declared) = at(&wt, i);
            if !r_declared && !w_declared {
                continue;
            }
            let found = self.compare(&rn, &wn);
            if found.is_empty() {
                continue;
            }
            let location = format!("/{prefix_keyword}/{i}");
            let found = rebase(found, &location);
            match (w_declared, r_declared) {
                (true, false) if contains_false(&rn) => out.push(inc(
                    "ITEM_REMOVED_FROM_CLOSED_CONTENT_MODEL",
                    location,
                    format!("the reader no longer allows array position {i}, which the writer may write"),
                )),
                (true, false) => {
                    out.push(inc(
                        "ITEM_REMOVED_NOT_COVERED_BY_PARTIALLY_OPEN_CONTENT_MODEL",
                        location,
                        format!("array position {i} is gone from the reader and its schema for further items does not accept what the writer writes there{}", first_reason(&found)),
                    ));
                    out.extend(found);
                }
                (false, true) if wn.is_empty() => out.push(inc(
                    "ITEM_ADDED_TO_OPEN_CONTENT_MODEL",
                    location,
                    format!("the reader constrains array position {i}, where the writer's open content model may write anything{}", first_reason(&found)),
                )),
                (false, true) => {
                    out.push(inc(
                        "ITEM_ADDED_NOT_COVERED_BY_PARTIALLY_OPEN_CONTENT_MODEL",
                        location,
                        format!("the reader constrains array position {i} more than the writer's schema for further items{}", first_reason(&found)),
                    ));
                    out.extend(found);
                }
                _ => out.extend(found),
            }
        }
        if writer_max.is_none_or(|m| (positions as f64) < m) {
            let rr: Vec<Node<'r>> = rt
                .iter()
                .filter_map(|(t, f)| t.rest.map(|v| f.child(v)))
                .collect();
            if !rr.is_empty() {
                let wr: Vec<Node<'r>> = wt
                    .iter()
                    .filter_map(|(t, f)| t.rest.map(|v| f.child(v)))
                    .collect();
                let found = self.compare(&rr, &wr);
                if !found.is_empty() {
                    let rest_keyword = rt
                        .iter()
                        .find(|(t, _)| t.rest.is_some())
                        .map_or("items", |(t, _)| t.rest_keyword);
                    if positions == 0 {
                        out.extend(rebase(found, &format!("/{rest_keyword}")));
                    } else if contains_false(&rr) {
                        out.push(inc(
                            "ADDITIONAL_ITEMS_REMOVED",
                            format!("/{rest_keyword}"),
                            "the reader refuses array items past its explicit positions, which the writer may write",
                        ));
                    } else if wr.is_empty() {
                        out.push(inc(
                            "ADDITIONAL_ITEMS_NARROWED",
                            format!("/{rest_keyword}"),
                            format!("the reader constrains further array items that the writer leaves open{}", first_reason(&found)),
                        ));
                    } else {
                        out.extend(rebase(found, &format!("/{rest_keyword}")));
                    }
                }
            }
        }
        self.check_unevaluated_items(r, &wt, writer_max, out);
        check_counts(
            r,
            w,
            "maxItems",
            "minItems",
            "MAX_ITEMS",
            "MIN_ITEMS",
            0.0,
            out,
        );
        let reader_unique = r
            .facets
            .iter()
            .any(|f| f.get("uniqueItems") == Some(&Value::Bool(true)));
        let writer_unique = w
            .facets
            .iter()
            .any(|f| f.get("uniqueItems") == Some(&Value::Bool(true)))
            || writer_max.is_some_and(|m| m <= 1.0);
        if reader_unique && !writer_unique {
            out.push(inc(
                "UNIQUE_ITEMS_ADDED",
                "/uniqueItems",
                "the reader requires unique array items, the writer does not",
            ));
        }
        // contains / minContains / maxContains.
        for facet in &r.facets {
            let Some(contains) = facet.get("contains") else {
                continue;
            };
            let min = facet.number("minContains").unwrap_or(1.0);
            let max = facet.number("maxContains");
            let mut ok = min <= 0.0 && max.is_none();
            let mut writer_had = false;
            for wf in &w.facets {
                let Some(wc) = wf.get("contains") else {
                    continue;
                };
                writer_had = true;
                let wmin = wf.number("minContains").unwrap_or(1.0);
                let wmax = wf.number("maxContains");
                let max_ok = match max {
                    None => true,
                    Some(m) => same_schema(wc, contains) && wmax.is_some_and(|x| x <= m),
                };
                if wmin >= min
                    && max_ok
                    && self
                        .compare(&[facet.child(contains)], &[wf.child(wc)])
                        .is_empty()
                {
                    ok = true;
                }
            }
            if !ok {
                out.push(inc(
                    if writer_had { "CONTAINS_CHANGED" } else { "CONTAINS_ADDED" },
                    "/contains",
                    "the reader requires array items (contains/minContains/maxContains) that the writer does not guarantee",
                ));
            }
        }
    }

    /// unevaluatedItems on a reader facet with in-place applicators (without them it acts as
    /// the rest of the tuple): positions past those the facet and the subschemas it always
    /// applies (allOf, $ref) evaluate fall to it.
    fn check_unevaluated_items<'r>(
        &mut self,
        r: &Conj<'r>,
        wt: &[(Tuple<'r>, &Facet<'r>)],
        writer_max: Option<f64>,
        out: &mut Vec<Incompatibility>,
    ) {
        for facet in &r.facets {
            let Some(u) = facet.get("unevaluatedItems") else {
                continue;
            };
            if u == &Value::Bool(true) || !facet.has_in_place_applicators() {
                continue;
            }
            let mut applied = Conj::default();
            add_facets(facet.node.clone(), &mut applied, &mut HashSet::new(), 0);
            let tuples: Vec<Tuple<'r>> = applied.facets.iter().map(tuple).collect();
            if tuples.iter().any(|t| t.rest.is_some()) {
                continue;
            }
            let evaluated = tuples.iter().map(|t| t.prefix.len()).max().unwrap_or(0);
            let positions = wt
                .iter()
                .map(|(t, _)| t.prefix.len())
                .max()
                .unwrap_or(0)
                .max(evaluated);
            let unevaluated = [facet.child(u)];
            let mut found = Vec::new();
            for i in evaluated..positions {
                if writer_max.is_some_and(|m| (i as f64) >= m) {
                    break;
                }
                let wn: Vec<Node<'r>> = wt
                    .iter()
                    .filter_map(|(t, f)| t.prefix.get(i).copied().or(t.rest).map(|v| f.child(v)))
                    .collect();
                found.extend(self.compare(&unevaluated, &wn));
            }
            if writer_max.is_none_or(|m| (positions as f64) < m) {
                let wr: Vec<Node<'r>> = wt
                    .iter()
                    .filter_map(|(t, f)| t.rest.map(|v| f.child(v)))
                    .collect();
                found.extend(self.compare(&unevaluated, &wr));
            }
            if !found.is_empty() {
                out.push(inc(
                    if u == &Value::Bool(false) {
                        "UNEVALUATED_ITEMS_REMOVED"
                    } else {
                        "UNEVALUATED_ITEMS_NARROWED"
                    },
                    "/unevaluatedItems",
                    format!(
                        "the reader's unevaluatedItems refuses array items the writer may write{}",
                        first_reason(&found)
                    ),
                ));
            }
        }
    }

    /// The reader's `anyOf`/`oneOf`, `not` and `if`/`then`/`else`.
    fn check_applicators<'r>(
        &mut self,
        r: &Conj<'r>,
        w: &Conj<'r>,
        writer_types: u8,
        out: &mut Vec<Incompatibility>,
    ) {
        for facet in &r.facets {
            for keyword in ["anyOf", "oneOf"] {
                let Some(branches) = facet.get(keyword).and_then(Value::as_array) else {
                    continue;
                };
                let mut closest: Option<Vec<Incompatibility>> = None;
                let mut accepted = false;
                for branch in branches {
                    let found = self.compare_with(&[facet.child(branch)], w);
                    if found.is_empty() {
                        accepted = true;
                        break;
                    }
                    if closest.as_ref().is_none_or(|c| found.len() < c.len()) {
                        closest = Some(found);
                    }
                }
                if !accepted && writer_types.count_ones() > 1 {
                    // The writer is a union of types: each type may be read by another branch.
                    accepted = TYPE_SCHEMAS
                        .iter()
                        .filter(|(bits, _)| writer_types & bits != 0)
                        .all(|(_, schema)| {
                            let Some(map) = schema.as_object() else {
                                return false;
                            };
                            let mut typed = w.clone();
                            typed.facets.push(Facet {
                                node: facet.child(schema),
                                map,
                                split: false,
                            });
                            branches
                                .iter()
                                .any(|b| self.compare_with(&[facet.child(b)], &typed).is_empty())
                        });
                }
                if accepted {
                    continue;
                }
                let what = if w.branch.is_empty() {
                    "what the writer writes".to_owned()
                } else {
                    format!("the writer's branch {}", &w.branch[1..])
                };
                let kind = if !w.branch.is_empty() && branches.len() < w.branch_count {
                    "SUM_TYPE_NARROWED"
                } else {
                    "COMBINED_TYPE_SUBSCHEMAS_CHANGED"
                };
                out.push(inc(
                    kind,
                    format!("/{keyword}"),
                    format!(
                        "no branch of the reader's {keyword} accepts {what}{}",
                        closest.map(|c| first_reason(&c)).unwrap_or_default()
                    ),
                ));
            }
            if let Some(not) = facet.get("not") {
                let negated = facet.child(not);
                let mut nc = Conj::default();
                add_facets(negated.clone(), &mut nc, &mut HashSet::new(), 0);
                let negated_types = nc
                    .facets
                    .iter()
                    .map(facet_types)
                    .fold(ALL_TYPES, |a, b| a & b);
                let mut ok = nc.never || writer_types & negated_types == 0;
                let mut writer_had = false;
                if !ok {
                    for wf in &w.facets {
                        if let Some(wn) = wf.get("not") {
                            writer_had = true;
                            // The writer excludes at least what the reader excludes.
                            if self
                                .compare(&[wf.child(wn)], std::slice::from_ref(&negated))
                                .is_empty()
                            {
                                ok = true;
                                break;
                            }
                        }
                    }
                }
                if !ok {
                    out.push(inc(
                        "NOT_TYPE_EXTENDED",
                        "/not",
                        if writer_had {
                            "the reader's not excludes documents that the writer's not allows"
                        } else {
                            "the reader's not excludes documents that the writer may write"
                        },
                    ));
                }
            }
            if facet.node.draft >= Draft::Draft7 && facet.map.contains_key("if") {
                let same = w.facets.iter().any(|wf| {
                    ["if", "then", "else"]
                        .iter()
                        .all(|k| match (facet.get(k), wf.get(k)) {
                            (None, None) => true,
                            (Some(a), Some(b)) => same_schema(a, b),
                            _ => false,
                        })
                });
                let mut ok = same;
                if !ok {
                    ok = ["then", "else"].iter().all(|k| match facet.get(k) {
                        None => true,
                        Some(s) => self.compare_with(&[facet.child(s)], w).is_empty(),
                    });
                }
                if !ok {
                    out.push(inc(
                        "CONDITIONAL_SCHEMA_CHANGED",
                        "/if",
                        "the reader's if/then/else requires what the writer does not guarantee",
                    ));
                }
            }
        }
    }
}

/// The schema a facet applies to properties it neither declares nor pattern-matches.
fn additional<'r>(facet: &Facet<'r>) -> Option<Node<'r>> {
    if let Some(a) = facet.get("additionalProperties") {
        return Some(facet.child(a));
    }
    if !facet.has_in_place_applicators()
        && let Some(u) = facet.get("unevaluatedProperties")
    {
        return Some(facet.child(u));
    }
    None
}

/// The writer's values when it restricts them with `enum`/`const` (intersection over its
/// facets), keeping only those of `types`.
fn writer_values<'r>(w: &Conj<'r>, types: u8) -> Option<Vec<&'r Value>> {
    let mut values: Option<Vec<&'r Value>> = None;
    for facet in &w.facets {
        if let Some(allowed) = facet_values(facet) {
            values = Some(match values {
                None => allowed,
                Some(v) => v
                    .into_iter()
                    .filter(|x| allowed.iter().any(|a| json_eq(a, x)))
                    .collect(),
            });
        }
    }
    values.map(|v| {
        v.into_iter()
            .filter(|x| value_type(x) & types != 0)
            .collect()
    })
}

fn check_number_value(r: &Conj<'_>, x: f64, out: &mut Vec<Incompatibility>) {
    let value = Bound {
        value: x,
        exclusive: false,
        keyword: "",
    };
    for facet in &r.facets {
        for bound in upper_bounds(facet) {
            if !within(value, bound, true) {
                out.push(inc(
                    if bound.keyword == "maximum" {
                        "MAXIMUM_DECREASED"
                    } else {
                        "EXCLUSIVE_MAXIMUM_DECREASED"
                    },
                    format!("/{}", bound.keyword),
                    format!(
                        "the writer's value {x} is above the reader's {} {}",
                        bound.keyword, bound.value
                    ),
                ));
            }
        }
        for bound in lower_bounds(facet) {
            if !within(value, bound, false) {
                out.push(inc(
                    if bound.keyword == "minimum" {
                        "MINIMUM_INCREASED"
                    } else {
                        "EXCLUSIVE_MINIMUM_INCREASED"
                    },
                    format!("/{}", bound.keyword),
                    format!(
                        "the writer's value {x} is below the reader's {} {}",
                        bound.keyword, bound.value
                    ),
                ));
            }
        }
        if let Some(m) = facet
            .number("multipleOf")
            .filter(|m| *m > 0.0 && !is_integer(x / m))
        {
            out.push(inc(
                "MULTIPLE_OF_CHANGED",
                "/multipleOf",
                format!("the writer's value {x} is not a multiple of the reader's multipleOf {m}"),
            ));
        }
    }
}

fn check_strings(r: &Conj<'_>, w: &Conj<'_>, values_checked: bool, out: &mut Vec<Incompatibility>) {
    let writer_max = w
        .facets
        .iter()
        .filter_map(|f| f.number("maxLength"))
        .reduce(f64::min);
    let writer_min = w
        .facets
        .iter()
        .filter_map(|f| f.number("minLength"))
        .reduce(f64::max);
    let writer_patterns: BTreeSet<&str> = w
        .facets
        .iter()
        .filter_map(|f| f.get("pattern").and_then(Value::as_str))
        .collect();
    let writer_formats: BTreeSet<&str> = w
        .facets
        .iter()
        .filter_map(|f| f.get("format").and_then(Value::as_str))
        .collect();
    for facet in &r.facets {
        check_string_annotations(facet, w, &writer_formats, out);
        if values_checked {
            continue;
        }
        if let Some(max) = facet.number("maxLength") {
            match writer_max {
                None => out.push(inc("MAX_LENGTH_ADDED", "/maxLength", format!("the reader limits strings to {max} characters, the writer does not limit them"))),
                Some(wm) if wm > max => out.push(inc("MAX_LENGTH_DECREASED", "/maxLength", format!("the reader's maxLength {max} is below the writer's {wm}"))),
                _ => {}
            }
        }
        if let Some(min) = facet.number("minLength").filter(|m| *m > 0.0) {
            match writer_min {
                None => out.push(inc(
                    "MIN_LENGTH_ADDED",
                    "/minLength",
                    format!("the reader requires at least {min} characters, the writer does not"),
                )),
                Some(wm) if wm < min => out.push(inc(
                    "MIN_LENGTH_INCREASED",
                    "/minLength",
                    format!("the reader's minLength {min} is above the writer's {wm}"),
                )),
                _ => {}
            }
        }
        if let Some(pattern) = facet.get("pattern").and_then(Value::as_str)
            && !writer_patterns.contains(pattern)
        {
            if writer_patterns.is_empty() {
                out.push(inc("PATTERN_ADDED", "/pattern", format!("the reader requires strings to match {pattern:?}, the writer has no pattern")));
            } else {
                out.push(inc(
                    "PATTERN_CHANGED",
                    "/pattern",
                    format!(
                        "the reader's pattern {pattern:?} differs from the writer's {}",
                        writer_patterns
                            .iter()
                            .map(|p| format!("{p:?}"))
                            .collect::<Vec<_>>()
                            .join(", ")
                    ),
                ));
            }
        }
    }
}

fn check_numbers(r: &Conj<'_>, w: &Conj<'_>, integer_only: bool, out: &mut Vec<Incompatibility>) {
    for upper in [true, false] {
        let bounds = |f: &Facet<'_>| {
            if upper {
                upper_bounds(f)
            } else {
                lower_bounds(f)
            }
        };
        let normalize = |b: Bound| if integer_only { b.to_integer(upper) } else { b };
        let writer = tightest(w.facets.iter().flat_map(bounds).map(normalize), upper);
        for facet in &r.facets {
            for bound in bounds(facet) {
                let nb = normalize(bound);
                let keyword = bound.keyword;
                let (added, tightened) = match (upper, keyword) {
                    (true, "maximum") => ("MAXIMUM_ADDED", "MAXIMUM_DECREASED"),
                    (true, _) => ("EXCLUSIVE_MAXIMUM_ADDED", "EXCLUSIVE_MAXIMUM_DECREASED"),
                    (false, "minimum") => ("MINIMUM_ADDED", "MINIMUM_INCREASED"),
                    (false, _) => ("EXCLUSIVE_MINIMUM_ADDED", "EXCLUSIVE_MINIMUM_INCREASED"),
                };
                match writer {
                    None => out.push(inc(added, format!("/{keyword}"), format!("the reader bounds numbers with {keyword} {}, the writer does not bound them", bound.value))),
                    Some(wb) if !within(wb, nb, upper) => out.push(inc(
                        tightened,
                        format!("/{keyword}"),
                        format!("the reader's {keyword} {} is tighter than the writer's {} {}", bound.value, wb.keyword, wb.value),
                    )),
                    _ => {}
                }
            }
        }
    }
    let writer_multiples: Vec<f64> = w
        .facets
        .iter()
        .filter_map(|f| f.number("multipleOf"))
        .collect();
    for facet in &r.facets {
        let Some(m) = facet.number("multipleOf").filter(|m| *m > 0.0) else {
            continue;
        };
        if (integer_only && is_integer(1.0 / m))
            || writer_multiples.iter().any(|wm| is_integer(wm / m))
        {
            continue;
        }
        let kind = if writer_multiples.is_empty() {
            "MULTIPLE_OF_ADDED"
        } else if writer_multiples.iter().any(|wm| is_integer(m / wm)) {
            "MULTIPLE_OF_EXPANDED"
        } else {
            "MULTIPLE_OF_CHANGED"
        };
        out.push(inc(
            kind,
            "/multipleOf",
            format!("the reader requires multiples of {m}, which the writer's numbers need not be"),
        ));
    }
}

/// maxItems/minItems or maxProperties/minProperties.
#[allow(clippy::too_many_arguments)] // one call per pair of keywords, clearer than a struct
fn check_counts(
    r: &Conj<'_>,
    w: &Conj<'_>,
    max_keyword: &str,
    min_keyword: &str,
    max_kind: &'static str,
    min_kind: &'static str,
    writer_floor: f64,
    out: &mut Vec<Incompatibility>,
) {
    let writer_max = w
        .facets
        .iter()
        .filter_map(|f| f.number(max_keyword))
        .reduce(f64::min);
    let writer_min = w
        .facets
        .iter()
        .filter_map(|f| f.number(min_keyword))
        .fold(writer_floor, f64::max);
    let kind = |base: &'static str, suffix: &str| -> &'static str {
        match (base, suffix) {
            ("MAX_ITEMS", "ADDED") => "MAX_ITEMS_ADDED",
            ("MAX_ITEMS", _) => "MAX_ITEMS_DECREASED",
            ("MIN_ITEMS", "ADDED") => "MIN_ITEMS_ADDED",
            ("MIN_ITEMS", _) => "MIN_ITEMS_INCREASED",
            ("MAX_PROPERTIES", "ADDED") => "MAX_PROPERTIES_ADDED",
            ("MAX_PROPERTIES", _) => "MAX_PROPERTIES_DECREASED",
            ("MIN_PROPERTIES", "ADDED") => "MIN_PROPERTIES_ADDED",
            _ => "MIN_PROPERTIES_INCREASED",
        }
    };
    for facet in &r.facets {
        if let Some(max) = facet.number(max_keyword) {
            match writer_max {
                None => out.push(inc(
                    kind(max_kind, "ADDED"),
                    format!("/{max_keyword}"),
                    format!("the reader sets {max_keyword} {max}, the writer has no such limit"),
                )),
                Some(wm) if wm > max => out.push(inc(
                    kind(max_kind, "DECREASED"),
                    format!("/{max_keyword}"),
                    format!("the reader's {max_keyword} {max} is below the writer's {wm}"),
                )),
                _ => {}
            }
        }
        if let Some(min) = facet.number(min_keyword).filter(|m| *m > 0.0)
            && writer_min < min
        {
            let has_writer_min = w.facets.iter().any(|f| f.number(min_keyword).is_some());
            out.push(inc(
                kind(min_kind, if has_writer_min { "INCREASED" } else { "ADDED" }),
                format!("/{min_keyword}"),
                format!("the reader's {min_keyword} {min} is above what the writer guarantees ({writer_min})"),
            ));
        }
    }
}

/// Adds the facets of `node` to `conj`: the schema object, its `$ref` target(s) and its
/// `allOf` subschemas, recursively. `visited` cuts `$ref` loops at the same position.
fn add_facets<'r>(node: Node<'r>, conj: &mut Conj<'r>, visited: &mut HashSet<usize>, depth: usize) {
    if depth > super::MAX_DEPTH || !visited.insert(node.value as *const Value as usize) {
        return;
    }
    let map = match node.value {
        Value::Bool(true) => return,
        Value::Object(map) => map,
        // `false`, and anything that is not a schema (the meta-schema check rules it out).
        _ => {
            conj.never = true;
            return;
        }
    };
    let resolver = node
        .resolver
        .in_subresource(node.draft.create_resource_ref(node.value))
        .unwrap_or_else(|_| node.resolver.clone());
    let node = Node {
        value: node.value,
        resolver,
        draft: node.draft,
    };
    let follow = |reference: Option<&str>,
                  recursive: bool,
                  conj: &mut Conj<'r>,
                  visited: &mut HashSet<usize>| {
        let resolved = if recursive {
            node.resolver.lookup_recursive_ref()
        } else if let Some(reference) = reference {
            node.resolver.lookup(reference)
        } else {
            return;
        };
        // Parsing resolved every reference; one that fails here constrains nothing more.
        if let Ok(resolved) = resolved {
            let (value, resolver, draft) = resolved.into_inner();
            add_facets(
                Node {
                    value,
                    resolver,
                    draft,
                },
                conj,
                visited,
                depth + 1,
            );
        }
    };
    if let Some(reference) = map.get("$ref").and_then(Value::as_str) {
        follow(Some(reference), false, conj, visited);
        if node.draft <= Draft::Draft7 {
            // Before 2019-09, `$ref` makes its siblings meaningless.
            return;
        }
    }
    if map.contains_key("$recursiveRef") && known_keyword(node.draft, "$recursiveRef") {
        follow(None, true, conj, visited);
    }
    if let Some(reference) = map
        .get("$dynamicRef")
        .and_then(Value::as_str)
        .filter(|_| known_keyword(node.draft, "$dynamicRef"))
    {
        // Resolved statically, as if it were a `$ref`.
        follow(Some(reference), false, conj, visited);
    }
    conj.facets.push(Facet {
        node: node.clone(),
        map,
        split: false,
    });
    if let Some(all) = map.get("allOf").and_then(Value::as_array) {
        for sub in all {
            add_facets(node.child(sub), conj, visited, depth + 1);
        }
    }
}

/// Names declared in `properties` by either side.
fn declared_names<'r>(r: &Conj<'r>, w: &Conj<'r>) -> BTreeSet<&'r str> {
    r.facets
        .iter()
        .chain(&w.facets)
        .filter_map(|f| f.get("properties").and_then(Value::as_object))
        .flat_map(|p| p.keys().map(String::as_str))
        .collect()
}

/// Collects the property names and patterns a schema's in-place applicators may evaluate
/// (`allOf`, `anyOf`, `oneOf`, `if`/`then`/`else`, `dependentSchemas`, recursively, without
/// following `$ref`); false when that cannot be bounded.
fn subtree_evaluates<'r>(
    map: &'r Map<String, Value>,
    names: &mut BTreeSet<&'r str>,
    patterns: &mut Vec<&'r str>,
    depth: usize,
) -> bool {
    if depth > super::MAX_DEPTH {
        return false;
    }
    if ["$ref", "$dynamicRef", "$recursiveRef"]
        .iter()
        .any(|k| map.contains_key(*k))
    {
        return false;
    }
    if depth > 0
        && (map.contains_key("additionalProperties") || map.contains_key("unevaluatedProperties"))
    {
        return false;
    }
    if let Some(p) = map.get("properties").and_then(Value::as_object) {
        names.extend(p.keys().map(String::as_str));
    }
    if let Some(p) = map.get("patternProperties").and_then(Value::as_object) {
        patterns.extend(p.keys().map(String::as_str));
    }
    let mut children: Vec<&'r Value> = Vec::new();
    for keyword in ["allOf", "anyOf", "oneOf"] {
        if let Some(list) = map.get(keyword).and_then(Value::as_array) {
            children.extend(list);
        }
    }
    for keyword in ["if", "then", "else"] {
        children.extend(map.get(keyword));
    }
    if let Some(d) = map.get("dependentSchemas").and_then(Value::as_object) {
        children.extend(d.values());
    }
    children.into_iter().all(|child| match child {
        Value::Object(m) => subtree_evaluates(m, names, patterns, depth + 1),
        _ => true,
    })
}

static TRUE_SCHEMA: Value = Value::Bool(true);

/// The writer's tuple model, where an `unevaluatedItems` on a facet with in-place
/// applicators provably governs the positions past those its subtree evaluates.
fn writer_tuple<'r>(facet: &Facet<'r>) -> Tuple<'r> {
    let mut t = tuple(facet);
    if t.rest.is_some() || !facet.has_in_place_applicators() {
        return t;
    }
    let Some(u) = facet.get("unevaluatedItems") else {
        return t;
    };
    let Some(evaluated) = subtree_items(facet.map, facet.node.draft, 0) else {
        return t;
    };
    while t.prefix.len() < evaluated {
        t.prefix.push(&TRUE_SCHEMA);
    }
    t.rest = Some(u);
    t
}

/// How many leading array positions a schema's in-place applicators may evaluate; `None`
/// when that cannot be bounded (a `$ref`, or a subschema evaluating every item).
fn subtree_items(map: &Map<String, Value>, draft: Draft, depth: usize) -> Option<usize> {
    // `contains` evaluates whichever items match it (2020-12), so it cannot be bounded.
    if depth > super::MAX_DEPTH
        || ["$ref", "$dynamicRef", "$recursiveRef", "contains"]
            .iter()
            .any(|k| map.contains_key(*k))
    {
        return None;
    }
    let mut evaluated = 0;
    if depth > 0 {
        if map.contains_key("unevaluatedItems") || map.contains_key("additionalItems") {
            return None;
        }
        match map.get("items") {
            Some(Value::Array(items)) if draft != Draft::Draft202012 => {
                evaluated = items.len();
            }
            Some(_) => return None,
            None => {}
        }
    }
    if let Some(prefix) = map.get("prefixItems").and_then(Value::as_array) {
        evaluated = evaluated.max(prefix.len());
    }
    let mut children: Vec<&Value> = Vec::new();
    for keyword in ["allOf", "anyOf", "oneOf"] {
        if let Some(list) = map.get(keyword).and_then(Value::as_array) {
            children.extend(list);
        }
    }
    for keyword in ["if", "then", "else"] {
        children.extend(map.get(keyword));
    }
    for child in children {
        if let Value::Object(m) = child {
            evaluated = evaluated.max(subtree_items(m, draft, depth + 1)?);
        }
    }
    Some(evaluated)
}

/// Two subschemas that are the same text and refer to nothing: equal wherever they sit (a
/// `$ref` could resolve differently in the reader's and the writer's documents).
fn same_schema(a: &Value, b: &Value) -> bool {
    fn refers(v: &Value) -> bool {
        match v {
            Value::Object(m) => {
                m.contains_key("$ref")
                    || m.contains_key("$dynamicRef")
                    || m.contains_key("$recursiveRef")
                    || m.values().any(refers)
            }
            Value::Array(items) => items.iter().any(refers),
            _ => false,
        }
    }
    json_eq(a, b) && !refers(a)
}

/// Whether `draft` gives `keyword` a meaning, as the `jsonschema` validator does (it is
/// lenient with `dependencies` and `additionalItems`, which it honours in every draft).
fn known_keyword(draft: Draft, keyword: &str) -> bool {
    match keyword {
        "const" | "contains" | "propertyNames" => draft >= Draft::Draft6,
        "if" | "then" | "else" => draft >= Draft::Draft7,
        "dependentRequired"
        | "dependentSchemas"
        | "unevaluatedItems"
        | "unevaluatedProperties"
        | "minContains"
        | "maxContains" => draft >= Draft::Draft201909,
        "$recursiveRef" => draft == Draft::Draft201909,
        "prefixItems" | "$dynamicRef" => draft >= Draft::Draft202012,
        // Asserted by the validator in drafts 6 and 7 only.
        "contentMediaType" | "contentEncoding" => {
            matches!(draft, Draft::Draft6 | Draft::Draft7)
        }
        _ => true,
    }
}

/// Whether two `patternProperties` patterns may match a common name. Only the cheap
/// disjoint case is recognised: both anchored with `^` and literal prefixes where neither
/// extends the other (`^S_` and `^I_`); anything else may overlap.
fn may_overlap(a: &str, b: &str) -> bool {
    match (literal_prefix(a), literal_prefix(b)) {
        (Some(x), Some(y)) => x.starts_with(&y) || y.starts_with(&x),
        _ => true,
    }
}

/// Whether every name matching `pattern` surely matches `by`: `by` is nothing but an anchored
/// literal prefix (`^x`) that `pattern`'s own anchored literal prefix starts with.
fn covers(by: &str, pattern: &str) -> bool {
    match (literal_prefix(by), literal_prefix(pattern)) {
        (Some(x), Some(y)) => by.len() == x.len() + 1 && y.starts_with(&x),
        _ => false,
    }
}

/// The literal text an anchored (`^…`) pattern requires a name to start with.
fn literal_prefix(pattern: &str) -> Option<String> {
    let rest = pattern.strip_prefix('^')?;
    let mut prefix = String::new();
    let mut chars = rest.chars().peekable();
    while let Some(c) = chars.next() {
        if !(c.is_alphanumeric() || c == '_' || c == '-' || c == ':') {
            break;
        }
        // A quantifier makes the character optional or repeated: stop before it.
        if matches!(chars.peek(), Some('*' | '?' | '{')) {
            break;
        }
        prefix.push(c);
    }
    Some(prefix)
}

/// The reader's `format`, `contentMediaType` and `contentEncoding` (asserted up to draft-07,
/// as the validator does; annotations from 2019-09 on): the writer must assert the same.
fn check_string_annotations(
    facet: &Facet<'_>,
    w: &Conj<'_>,
    writer_formats: &BTreeSet<&str>,
    out: &mut Vec<Incompatibility>,
) {
    if facet.node.draft > Draft::Draft7 {
        return;
    }
    if let Some(format) = facet.get("format").and_then(Value::as_str)
        && !writer_formats.contains(format)
    {
        out.push(inc(
            if writer_formats.is_empty() {
                "FORMAT_ADDED"
            } else {
                "FORMAT_CHANGED"
            },
            "/format",
            format!("the reader requires format {format:?}, the writer does not"),
        ));
    }
    for (keyword, kind) in [
        ("contentMediaType", "CONTENT_MEDIA_TYPE_CHANGED"),
        ("contentEncoding", "CONTENT_ENCODING_CHANGED"),
    ] {
        if let Some(value) = facet.get(keyword)
            && !w.facets.iter().any(|f| f.get(keyword) == Some(value))
        {
            out.push(inc(
                kind,
                format!("/{keyword}"),
                format!("the reader requires {keyword} {value}, the writer does not"),
            ));
        }
    }
}
