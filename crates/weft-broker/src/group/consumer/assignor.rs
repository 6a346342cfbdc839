//! The server-side assignors of KIP-848 groups: `uniform` (balanced and sticky) and `range`
//! (contiguous ranges per topic). Both are pure functions of the members' subscriptions,
//! the topics' partition counts and, for `uniform`, the previous target assignment.

use std::collections::{BTreeMap, BTreeSet};

use uuid::Uuid;

use super::{Assignment, Metadata};

/// `uniform`: Kafka's default server assignor.
pub(crate) const UNIFORM: &str = "uniform";
/// `range`.
pub(crate) const RANGE: &str = "range";
/// The assignors served, default first.
pub(crate) const ASSIGNORS: [&str; 2] = [UNIFORM, RANGE];

/// Member id to the names of the topics it subscribes to (already resolved against the
/// metadata: every name is in it).
pub(crate) type Subscriptions = BTreeMap<String, BTreeSet<String>>;

/// Target assignment of every member in `subs` with assignor `name` (unknown names use
/// `uniform`).
pub(crate) fn assign(
    name: &str,
    subs: &Subscriptions,
    meta: &Metadata,
    previous: &BTreeMap<String, Assignment>,
) -> BTreeMap<String, Assignment> {
    if name == RANGE {
        range(subs, meta)
    } else {
        uniform(subs, meta, previous)
    }
}

type Tp = (Uuid, i32);

fn to_assignment(parts: &BTreeSet<Tp>) -> Assignment {
    let mut a = Assignment::new();
    for (t, p) in parts {
        a.entry(*t).or_default().insert(*p);
    }
    a
}

/// Every member gets a share of the partitions of the topics it subscribes to, as even as
/// the subscriptions allow (counts differ by at most one between two members that could
/// swap a partition), and a partition stays with its previous owner unless balance needs
/// it elsewhere: few partitions move, so few are revoked.
///
/// Greedy: keep previous partitions that are still eligible, hand every other partition
/// to the eligible member with the fewest, then move partitions from the most loaded
/// member to an eligible one with at least two fewer until no such move exists (each move
/// lowers the sum of squared counts, so this ends).
pub(crate) fn uniform(
    subs: &Subscriptions,
    meta: &Metadata,
    previous: &BTreeMap<String, Assignment>,
) -> BTreeMap<String, Assignment> {
    // topic id -> (members subscribed, partitions)
    let mut eligible: BTreeMap<Uuid, BTreeSet<&str>> = BTreeMap::new();
    let mut all: Vec<Tp> = Vec::new();
    for (name, (id, count)) in meta {
        let members: BTreeSet<&str> = subs
            .iter()
            .filter(|(_, topics)| topics.contains(name))
            .map(|(m, _)| m.as_str())
            .collect();
        if members.is_empty() {
            continue;
        }
        eligible.insert(*id, members);
        all.extend((0..*count).map(|p| (*id, p)));
    }
    let can = |m: &str, tp: &Tp| eligible.get(&tp.0).is_some_and(|e| e.contains(m));
    let mut owned: BTreeMap<&str, BTreeSet<Tp>> =
        subs.keys().map(|m| (m.as_str(), BTreeSet::new())).collect();
    let mut taken: BTreeSet<Tp> = BTreeSet::new();
    for (m, parts) in owned.iter_mut() {
        let Some(prev) = previous.get(*m) else {
            continue;
        };
        for (t, ps) in prev {
            for p in ps {
                let tp = (*t, *p);
                let exists = meta.values().any(|(id, n)| id == t && *p < *n);
                if exists && can(m, &tp) && taken.insert(tp) {
                    parts.insert(tp);
                }
            }
        }
    }
    // Trim kept partitions above the ceiling of an even split among the eligible, so a
    // newcomer is not starved by one member that keeps everything.
    let members = owned.len().max(1);
    let ceiling = all.len().div_ceil(members);
    for parts in owned.values_mut() {
        while parts.len() > ceiling {
            if let Some(tp) = parts.pop_last() {
                taken.remove(&tp);
            }
        }
    }
    for tp in &all {
        if taken.contains(tp) {
            continue;
        }
        let best = owned
            .iter()
            .filter(|(m, _)| can(m, tp))
            .min_by_key(|(m, parts)| (parts.len(), **m))
            .map(|(m, _)| *m);
        if let Some(m) = best
            && let Some(parts) = owned.get_mut(m)
        {
            parts.insert(*tp);
            taken.insert(*tp);
        }
    }
    loop {
        let mut moved = false;
        let mut donors: Vec<&str> = owned.keys().copied().collect();
        donors.sort_by_key(|m| std::cmp::Reverse(owned[m].len()));
        'donors: for donor in donors {
            let load = owned[donor].len();
            let candidates: Vec<Tp> = owned[donor].iter().rev().copied().collect();
            for tp in candidates {
                let receiver = owned
                    .iter()
                    .filter(|(m, parts)| **m != donor && parts.len() + 2 <= load && can(m, &tp))
                    .min_by_key(|(m, parts)| (parts.len(), **m))
                    .map(|(m, _)| *m);
                if let Some(r) = receiver {
                    if let Some(parts) = owned.get_mut(donor) {
                        parts.remove(&tp);
                    }
                    if let Some(parts) = owned.get_mut(r) {
                        parts.insert(tp);
                    }
                    moved = true;
                    break 'donors;
                }
            }
        }
        if !moved {
            break;
        }
    }
    owned
        .into_iter()
        .map(|(m, parts)| (m.to_owned(), to_assignment(&parts)))
        .collect()
}

/// For each topic, its members (by member id) get contiguous ranges of its partitions, the
/// first `partitions % members` one more.
pub(crate) fn range(subs: &Subscriptions, meta: &Metadata) -> BTreeMap<String, Assignment> {
    let mut out: BTreeMap<String, Assignment> = subs
        .keys()
        .map(|m| (m.clone(), Assignment::new()))
        .collect();
    for (name, (id, count)) in meta {
        let members: Vec<&String> = subs
            .iter()
            .filter(|(_, topics)| topics.contains(name))
            .map(|(m, _)| m)
            .collect();
        if members.is_empty() || *count <= 0 {
            continue;
        }
        let n = members.len() as i32;
        let (base, extra) = (count / n, count % n);
        let mut next = 0;
        for (i, m) in members.into_iter().enumerate() {
            let take = base + i32::from((i as i32) < extra);
            if take > 0
                && let Some(a) = out.get_mut(m)
            {
                a.insert(*id, (next..next + take).collect());
            }
            next += take;
        }
    }
    out
}
