//! A linearizability checker for histories of Kubernetes-style object operations: Wing &
//! Gong's search as improved by Lowe (WGL), with the memoization of
//! (linearized set, model state) that Porcupine and Knossos use (the set kept as a 128-bit
//! Zobrist hash). Pure: no IO.
//!
//! The model is one object per key: `create` (fails if it exists), `get` (value and
//! resourceVersion, or not found), `update` as compare-and-set on resourceVersion (fails on
//! conflict or when absent), `delete`. Histories are checked per key (linearizability is
//! compositional, Herlihy & Wing's locality), which keeps long histories tractable.
//!
//! resourceVersions are the store's global revision, so the model also knows that every
//! write to a key gets a higher resourceVersion than the key's previous one: a reordered or
//! resurrected write is caught even when no read saw it.
//!
//! An operation whose outcome is unknown (timeout, broken connection, 5xx) "maybe
//! happened", Jepsen's `:info`: it may take effect at any point after its invocation, or
//! never. It gets no return entry, so the search may linearize it anywhere after its call
//! or leave it out; the search succeeds once every operation with a known outcome is
//! linearized. A `get` with an unknown outcome says nothing and is dropped.

use std::collections::{BTreeMap, HashMap, HashSet};

/// What a client asked for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Input {
    Create {
        value: String,
    },
    Get,
    /// Compare-and-set: succeeds only when the stored resourceVersion is `expected_rv`.
    Update {
        value: String,
        expected_rv: u64,
    },
    Delete,
}

/// What the client observed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Output {
    /// A write took effect; the object's (or, for delete, the deletion's) resourceVersion.
    Written { rv: u64 },
    /// A get found the object.
    Found { value: String, rv: u64 },
    /// 404: the object does not exist (get, update, delete).
    NotFound,
    /// 409 on create: the object already exists.
    AlreadyExists,
    /// 409 on update: the resourceVersion did not match.
    Conflict,
    /// No answer (timeout, connection error, 5xx): maybe happened.
    Unknown,
}

/// One operation of a history. Times are any monotonic unit (the recorder uses
/// nanoseconds since the run started); `ret` is ignored for [`Output::Unknown`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Operation {
    pub client: usize,
    pub key: String,
    pub call: u64,
    pub ret: u64,
    pub input: Input,
    pub output: Output,
}

/// What a successful check saw.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Report {
    pub keys: usize,
    pub operations: usize,
    /// Operations with an unknown outcome (reads among them dropped).
    pub unknown: usize,
    /// Search steps over all keys (for the record and for tuning).
    pub steps: u64,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CheckError {
    /// No linearization exists for this key's sub-history.
    NotLinearizable {
        key: String,
        /// The longest linearizable prefix the search found, in order.
        longest_prefix: Vec<Operation>,
        /// Operations with a known outcome that could not be placed after that prefix.
        stuck: Vec<Operation>,
    },
    /// An operation's output cannot belong to its input (a recorder bug).
    Malformed {
        op: Box<Operation>,
        why: &'static str,
    },
    /// The search ran out of its step budget without an answer.
    TooExpensive { key: String, steps: u64 },
}

impl std::fmt::Display for CheckError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            CheckError::NotLinearizable {
                key,
                longest_prefix,
                stuck,
            } => {
                writeln!(
                    f,
                    "key {key}: not linearizable; longest linearizable prefix has {} ops, ending:",
                    longest_prefix.len()
                )?;
                for op in longest_prefix.iter().rev().take(8).rev() {
                    writeln!(f, "  {op:?}")?;
                }
                writeln!(f, "none of these could come next:")?;
                for op in stuck.iter().take(8) {
                    writeln!(f, "  {op:?}")?;
                }
                Ok(())
            }
            CheckError::Malformed { op, why } => write!(f, "malformed operation ({why}): {op:?}"),
            CheckError::TooExpensive { key, steps } => write!(
                f,
                "key {key}: no answer within {steps} search steps (history too concurrent)"
            ),
        }
    }
}

impl std::error::Error for CheckError {}

/// The search gives up after this many steps per key rather than hang a test.
const STEP_BUDGET: u64 = 20_000_000;

/// Check a whole history, key by key.
///
/// # Errors
/// The first key without a linearization, a malformed operation, or an exhausted budget.
pub fn check(history: &[Operation]) -> Result<Report, CheckError> {
    let mut by_key: BTreeMap<&str, Vec<&Operation>> = BTreeMap::new();
    let mut report = Report::default();
    for op in history {
        validate(op)?;
        report.operations += 1;
        if op.output == Output::Unknown {
            report.unknown += 1;
            if op.input == Input::Get {
                continue;
            }
        }
        by_key.entry(&op.key).or_default().push(op);
    }
    report.keys = by_key.len();
    for (key, ops) in by_key {
        report.steps += check_key(key, &ops)?;
    }
    Ok(report)
}

fn validate(op: &Operation) -> Result<(), CheckError> {
    let ok = matches!(
        (&op.input, &op.output),
        (_, Output::Unknown)
            | (
                Input::Create { .. },
                Output::Written { .. } | Output::AlreadyExists
            )
            | (Input::Get, Output::Found { .. } | Output::NotFound)
            | (
                Input::Update { .. },
                Output::Written { .. } | Output::Conflict | Output::NotFound
            )
            | (Input::Delete, Output::Written { .. } | Output::NotFound)
    );
    if !ok {
        return Err(CheckError::Malformed {
            op: Box::new(op.clone()),
            why: "output does not fit the input",
        });
    }
    if op.output != Output::Unknown && op.ret < op.call {
        return Err(CheckError::Malformed {
            op: Box::new(op.clone()),
            why: "returns before it is invoked",
        });
    }
    Ok(())
}

/// What the model knows about a key's resourceVersion: exactly (a client saw it), or only
/// that it is above some version (a maybe-write set it, and nobody has read it since).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum Rv {
    Known(u64),
    Above(u64),
}

impl Rv {
    /// Whether the actual version can be `rv`.
    fn admits(self, rv: u64) -> bool {
        match self {
            Rv::Known(k) => k == rv,
            Rv::Above(f) => rv > f,
        }
    }

    /// Whether a later write's version `rv` can follow this one.
    fn precedes(self, rv: u64) -> bool {
        match self {
            Rv::Known(k) | Rv::Above(k) => rv > k,
        }
    }

    fn floor(self) -> u64 {
        match self {
            Rv::Known(k) | Rv::Above(k) => k,
        }
    }
}

/// The model state of one key. Values are interned (index into the key's value table).
/// When the object is absent, `rv` is its deletion's version (the floor for a re-create).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
struct State {
    value: Option<u32>,
    rv: Rv,
}

/// An operation in model terms: values interned, unknown outcomes marked.
#[derive(Debug, Clone, Copy)]
enum Step {
    Create { value: u32, out: Out },
    Get { found: Option<(u32, u64)> },
    Update { value: u32, expected: u64, out: Out },
    Delete { out: Out },
}

#[derive(Debug, Clone, Copy)]
enum Out {
    Written(u64),
    /// AlreadyExists, Conflict or NotFound: nothing changed.
    Refused,
    Unknown,
}

/// The model's transition, or `None` when `step` cannot happen in `s`. Deterministic: an
/// unknown-outcome step here means "it happened"; "it never happened" is the search leaving
/// it out.
fn apply(s: State, step: Step) -> Option<State> {
    match step {
        Step::Get { found: None } => s.value.is_none().then_some(s),
        Step::Get {
            found: Some((v, rv)),
        } => (s.value == Some(v) && s.rv.admits(rv)).then_some(State {
            value: s.value,
            rv: Rv::Known(rv),
        }),
        Step::Create { value, out } => match out {
            Out::Written(rv) => (s.value.is_none() && s.rv.precedes(rv)).then_some(State {
                value: Some(value),
                rv: Rv::Known(rv),
            }),
            Out::Refused => s.value.is_some().then_some(s),
            Out::Unknown => s.value.is_none().then_some(State {
                value: Some(value),
                rv: Rv::Above(s.rv.floor()),
            }),
        },
        Step::Update {
            value,
            expected,
            out,
        } => match out {
            Out::Written(rv) => (s.value.is_some() && s.rv.admits(expected) && rv > expected)
                .then_some(State {
                    value: Some(value),
                    rv: Rv::Known(rv),
                }),
            // A conflict (present, other version) or not found (absent): both leave the
            // state alone; which one the server said is checked below.
            Out::Refused => Some(s),
            Out::Unknown => (s.value.is_some() && s.rv.admits(expected)).then_some(State {
                value: Some(value),
                rv: Rv::Above(expected),
            }),
        },
        Step::Delete { out } => match out {
            Out::Written(rv) => (s.value.is_some() && s.rv.precedes(rv)).then_some(State {
                value: None,
                rv: Rv::Known(rv),
            }),
            Out::Refused => s.value.is_none().then_some(s),
            Out::Unknown => s.value.is_some().then_some(State {
                value: None,
                rv: Rv::Above(s.rv.floor()),
            }),
        },
    }
}

/// Updates refused with 409 need the object present with another version; with 404,
/// absent. Kept apart from `apply` because `Out` does not say which refusal it was.
fn refusal_fits(s: State, op: &Operation) -> bool {
    match (&op.input, &op.output) {
        (Input::Update { expected_rv, .. }, Output::Conflict) => {
            s.value.is_some() && s.rv != Rv::Known(*expected_rv)
        }
        (Input::Update { .. }, Output::NotFound) => s.value.is_none(),
        _ => true,
    }
}

/// A doubly linked list of call and return entries, in time order, that the search
/// "lifts" linearized operations out of and puts back on backtracking.
struct Entries {
    /// Entry `i`: (operation index, is call).
    entry: Vec<(usize, bool)>,
    next: Vec<usize>,
    prev: Vec<usize>,
    /// Per operation: its call entry and its return entry (unknown outcomes have none).
    call_of: Vec<usize>,
    ret_of: Vec<Option<usize>>,
}

const NIL: usize = usize::MAX;

impl Entries {
    fn new(ops: &[&Operation]) -> Self {
        // (time, returns after calls at the same instant, op): an operation that returns
        // at the instant another is invoked is taken as concurrent with it.
        let mut timed: Vec<(u64, bool, usize)> = Vec::new();
        for (i, op) in ops.iter().enumerate() {
            timed.push((op.call, false, i));
            if op.output != Output::Unknown {
                timed.push((op.ret, true, i));
            }
        }
        timed.sort_unstable();
        let n = timed.len();
        let mut call_of = vec![0; ops.len()];
        let mut ret_of = vec![None; ops.len()];
        let mut entry = Vec::with_capacity(n + 1);
        for (i, &(_, is_ret, op)) in timed.iter().enumerate() {
            entry.push((op, !is_ret));
            if is_ret {
                ret_of[op] = Some(i);
            } else {
                call_of[op] = i;
            }
        }
        // Slot n is the head sentinel.
        let next = (0..=n)
            .map(|i| match i {
                _ if i == n => {
                    if n == 0 {
                        NIL
                    } else {
                        0
                    }
                }
                _ if i + 1 == n => NIL,
                _ => i + 1,
            })
            .collect();
        let prev = (0..=n)
            .map(|i| match i {
                _ if i == n => NIL,
                0 => n,
                _ => i - 1,
            })
            .collect();
        Entries {
            entry,
            next,
            prev,
            call_of,
            ret_of,
        }
    }

    fn head(&self) -> usize {
        self.entry.len()
    }

    fn first(&self) -> usize {
        self.next[self.head()]
    }

    fn unlink(&mut self, i: usize) {
        let (p, n) = (self.prev[i], self.next[i]);
        self.next[p] = n;
        if n != NIL {
            self.prev[n] = p;
        }
    }

    fn relink(&mut self, i: usize) {
        let (p, n) = (self.prev[i], self.next[i]);
        self.next[p] = i;
        if n != NIL {
            self.prev[n] = i;
        }
    }

    fn lift(&mut self, op: usize) {
        self.unlink(self.call_of[op]);
        if let Some(r) = self.ret_of[op] {
            self.unlink(r);
        }
    }

    fn unlift(&mut self, op: usize) {
        if let Some(r) = self.ret_of[op] {
            self.relink(r);
        }
        self.relink(self.call_of[op]);
    }
}

/// The linearized set as a Zobrist hash: a random 128-bit word per operation, XORed in
/// and out, so remembering a (set, state) pair costs O(1) instead of a copy of a bitset
/// (which made long histories quadratic). Two different sets collide with probability
/// about 2^-128 per pair; a collision could only make the search skip a configuration.
struct LinearizedSet {
    words: Vec<u128>,
    hash: u128,
}

impl LinearizedSet {
    fn new(n: usize) -> Self {
        // splitmix64: fixed seed, so a check is reproducible.
        let mut x = 0x2545_f491_4f6c_dd1du64;
        let mut next = || {
            x = x.wrapping_add(0x9e37_79b9_7f4a_7c15);
            let mut z = x;
            z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
            z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
            z ^ (z >> 31)
        };
        let words = (0..n)
            .map(|_| (u128::from(next()) << 64) | u128::from(next()))
            .collect();
        LinearizedSet { words, hash: 0 }
    }

    fn flip(&mut self, i: usize) {
        self.hash ^= self.words[i];
    }
}

fn to_step(op: &Operation, intern: &mut HashMap<String, u32>) -> Step {
    let mut id = |v: &str| {
        let n = intern.len() as u32;
        *intern.entry(v.to_string()).or_insert(n)
    };
    let out = match op.output {
        Output::Written { rv } => Out::Written(rv),
        Output::Unknown => Out::Unknown,
        _ => Out::Refused,
    };
    match &op.input {
        Input::Create { value } => Step::Create {
            value: id(value),
            out,
        },
        Input::Get => Step::Get {
            found: match &op.output {
                Output::Found { value, rv } => Some((id(value), *rv)),
                _ => None,
            },
        },
        Input::Update { value, expected_rv } => Step::Update {
            value: id(value),
            expected: *expected_rv,
            out,
        },
        Input::Delete => Step::Delete { out },
    }
}

/// WGL over one key's operations; returns the number of search steps.
fn check_key(key: &str, ops: &[&Operation]) -> Result<u64, CheckError> {
    let mut intern = HashMap::new();
    let steps_of: Vec<Step> = ops.iter().map(|op| to_step(op, &mut intern)).collect();
    let must = ops.iter().filter(|o| o.output != Output::Unknown).count();
    let mut entries = Entries::new(ops);
    let mut linearized = LinearizedSet::new(ops.len());
    let mut seen: HashSet<(u128, State)> = HashSet::new();
    let mut state = State {
        value: None,
        rv: Rv::Above(0),
    };
    // (operation, state before it)
    let mut stack: Vec<(usize, State)> = Vec::new();
    let mut done = 0usize; // known-outcome operations on the stack
    let mut best: Vec<usize> = Vec::new();
    let mut steps = 0u64;
    let mut cursor = entries.first();
    loop {
        if done == must {
            return Ok(steps);
        }
        steps += 1;
        if steps > STEP_BUDGET {
            return Err(CheckError::TooExpensive {
                key: key.to_string(),
                steps,
            });
        }
        let at_call = cursor != NIL && entries.entry[cursor].1;
        if at_call {
            let op = entries.entry[cursor].0;
            let next = apply(state, steps_of[op]).filter(|_| refusal_fits(state, ops[op]));
            if let Some(next) = next {
                linearized.flip(op);
                if seen.insert((linearized.hash, next)) {
                    stack.push((op, state));
                    state = next;
                    if ops[op].output != Output::Unknown {
                        done += 1;
                    }
                    entries.lift(op);
                    cursor = entries.first();
                    continue;
                }
                linearized.flip(op);
            }
            cursor = entries.next[cursor];
            continue;
        }
        // A return entry (or the end): the operation it closes was not linearized in time.
        if stack.len() > best.len() {
            best = stack.iter().map(|(op, _)| *op).collect();
        }
        let Some((op, before)) = stack.pop() else {
            return Err(not_linearizable(key, ops, &best));
        };
        state = before;
        linearized.flip(op);
        if ops[op].output != Output::Unknown {
            done -= 1;
        }
        entries.unlift(op);
        cursor = entries.next[entries.call_of[op]];
    }
}

fn not_linearizable(key: &str, ops: &[&Operation], best: &[usize]) -> CheckError {
    let placed: HashSet<usize> = best.iter().copied().collect();
    let unplaced: Vec<&Operation> = (0..ops.len())
        .filter(|i| !placed.contains(i) && ops[*i].output != Output::Unknown)
        .map(|i| ops[i])
        .collect();
    // The candidates for the next place: everything invoked before the first of them
    // had to return.
    let first_ret = unplaced.iter().map(|o| o.ret).min().unwrap_or(0);
    CheckError::NotLinearizable {
        key: key.to_string(),
        longest_prefix: best.iter().map(|&i| ops[i].clone()).collect(),
        stuck: unplaced
            .into_iter()
            .filter(|o| o.call <= first_ret)
            .cloned()
            .collect(),
    }
}

/// A copy of `history` (one that passes) with a stale read planted: the earliest read
/// that saw a write acknowledged before it began now returns an older acknowledged value
/// of its key. Any correct checker must reject it; the fault tests use it to show the
/// checker has teeth on their real histories. `None` when no such read exists.
///
/// The copy ends at that read's return (operations still running then get an unknown
/// outcome, which keeps the prefix linearizable): a failing search has to exhaust every
/// alternative, which is cheap on a short prefix and not on hours of history.
pub fn with_stale_read(history: &[Operation]) -> Option<Vec<Operation>> {
    let h = history;
    let (i, value, rv) = h.iter().enumerate().find_map(|(i, read)| {
        let Output::Found { rv, .. } = read.output else {
            return None;
        };
        // The write the read saw was acknowledged before the read began ...
        h.iter().find(|w| {
            w.key == read.key && w.output == (Output::Written { rv }) && w.ret < read.call
        })?;
        // ... and an older one (older version: before it in any linearization) exists.
        h.iter().find_map(|p| match (&p.input, &p.output) {
            (
                Input::Create { value } | Input::Update { value, .. },
                Output::Written { rv: old },
            ) if p.key == read.key && *old < rv => Some((i, value.clone(), *old)),
            _ => None,
        })
    })?;
    let cut = h[i].ret;
    let mut out: Vec<Operation> = h
        .iter()
        .filter(|o| o.call <= cut)
        .cloned()
        .map(|mut o| {
            if o.ret > cut {
                o.output = Output::Unknown;
            }
            o
        })
        .collect();
    let read = out
        .iter_mut()
        .find(|o| **o == h[i])
        .expect("the read is in its own prefix");
    read.output = Output::Found { value, rv };
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A compact history builder: `op(client, call, ret, input, output)` on key "k".
    fn op(client: usize, call: u64, ret: u64, input: Input, output: Output) -> Operation {
        Operation {
            client,
            key: "k".into(),
            call,
            ret,
            input,
            output,
        }
    }
    fn create(v: &str) -> Input {
        Input::Create { value: v.into() }
    }
    fn update(v: &str, expected_rv: u64) -> Input {
        Input::Update {
            value: v.into(),
            expected_rv,
        }
    }
    fn found(v: &str, rv: u64) -> Output {
        Output::Found {
            value: v.into(),
            rv,
        }
    }
    fn written(rv: u64) -> Output {
        Output::Written { rv }
    }

    fn assert_rejected(h: &[Operation]) -> CheckError {
        let err = check(h).expect_err("history must be rejected");
        assert!(
            matches!(err, CheckError::NotLinearizable { .. }),
            "wrong error: {err}"
        );
        // The explanation names the key and is printable.
        assert!(err.to_string().contains("key k"), "{err}");
        err
    }

    #[test]
    fn sequential_and_concurrent_linearizable_histories_pass() {
        let h = vec![
            op(0, 0, 10, create("a"), written(5)),
            op(1, 11, 20, Input::Get, found("a", 5)),
            op(0, 21, 30, update("b", 5), written(7)),
            op(1, 31, 40, update("c", 5), Output::Conflict),
            op(1, 41, 50, Input::Delete, written(9)),
            op(0, 51, 60, Input::Get, Output::NotFound),
            op(0, 61, 70, update("d", 9), Output::NotFound),
            op(1, 71, 80, create("e"), written(12)),
            op(0, 81, 90, create("f"), Output::AlreadyExists),
        ];
        assert_eq!(check(&h).unwrap().operations, 9);
        // A read concurrent with a write may see either side of it.
        let h = vec![
            op(0, 0, 10, create("a"), written(5)),
            op(0, 20, 40, update("b", 5), written(6)),
            op(1, 25, 30, Input::Get, found("b", 6)),
            op(2, 26, 45, Input::Get, found("a", 5)),
        ];
        check(&h).unwrap();
        // Two concurrent creates: one wins, and the loser saw AlreadyExists.
        let h = vec![
            op(0, 0, 10, create("a"), Output::AlreadyExists),
            op(1, 1, 9, create("b"), written(3)),
            op(2, 11, 12, Input::Get, found("b", 3)),
        ];
        check(&h).unwrap();
    }

    #[test]
    fn a_stale_read_after_an_acknowledged_write_is_rejected() {
        let h = vec![
            op(0, 0, 10, create("a"), written(5)),
            op(0, 11, 20, update("b", 5), written(6)),
            op(1, 21, 30, Input::Get, found("a", 5)),
        ];
        assert_rejected(&h);
        // A maybe-delete and a maybe-create of the old value's key do not make it fresh:
        // a re-create would carry a new value and a higher version.
        let h = vec![
            op(0, 0, 10, create("a"), written(5)),
            op(0, 11, 20, update("b", 5), written(6)),
            op(2, 12, 0, Input::Delete, Output::Unknown),
            op(3, 13, 0, create("a2"), Output::Unknown),
            op(1, 21, 30, Input::Get, found("a", 5)),
        ];
        assert_rejected(&h);
    }

    #[test]
    fn two_successful_cas_updates_from_the_same_version_are_rejected() {
        let h = vec![
            op(0, 0, 10, create("a"), written(5)),
            op(1, 11, 30, update("b", 5), written(6)),
            op(2, 12, 31, update("c", 5), written(7)),
        ];
        assert_rejected(&h);
        // Nor with a concurrent maybe-delete and maybe-update in between.
        let h = vec![
            op(0, 0, 10, create("a"), written(5)),
            op(3, 5, 0, Input::Delete, Output::Unknown),
            op(4, 6, 0, update("d", 5), Output::Unknown),
            op(1, 11, 30, update("b", 5), written(6)),
            op(2, 12, 31, update("c", 5), written(7)),
        ];
        assert_rejected(&h);
    }

    #[test]
    fn a_lost_acknowledged_create_is_rejected() {
        let h = vec![
            op(0, 0, 10, create("a"), written(5)),
            op(1, 20, 30, Input::Get, Output::NotFound),
        ];
        assert_rejected(&h);
        // Also when something else "maybe" happened, as long as it cannot explain it.
        let h = vec![
            op(0, 0, 10, create("a"), written(5)),
            op(2, 1, 0, create("x"), Output::Unknown),
            op(1, 20, 30, Input::Get, Output::NotFound),
        ];
        assert_rejected(&h);
    }

    #[test]
    fn a_read_of_a_value_never_written_is_rejected() {
        let h = vec![
            op(0, 0, 10, create("a"), written(5)),
            op(1, 20, 30, Input::Get, found("zzz", 5)),
        ];
        assert_rejected(&h);
        // The right value at a version no write produced.
        let h = vec![
            op(0, 0, 10, create("a"), written(5)),
            op(1, 20, 30, Input::Get, found("a", 4)),
        ];
        assert_rejected(&h);
    }

    #[test]
    fn a_write_with_a_lower_version_than_its_predecessor_is_rejected() {
        // Real-time order says create then delete; versions say the opposite.
        let h = vec![
            op(0, 0, 10, create("a"), written(5)),
            op(0, 20, 30, Input::Delete, written(4)),
        ];
        assert_rejected(&h);
    }

    #[test]
    fn maybe_operations_may_happen_later_or_never() {
        // A timed-out create that nobody observed: fine either way.
        let h = vec![
            op(0, 0, 0, create("a"), Output::Unknown),
            op(1, 20, 30, Input::Get, Output::NotFound),
        ];
        check(&h).unwrap();
        // ... and it may take effect long after it timed out, even after a NotFound.
        let h = vec![
            op(0, 0, 0, create("a"), Output::Unknown),
            op(1, 20, 30, Input::Get, Output::NotFound),
            op(1, 40, 50, Input::Get, found("a", 8)),
            op(1, 60, 70, update("b", 8), written(9)),
        ];
        check(&h).unwrap();
        // A maybe-update on top of a known version: read back with a higher one.
        let h = vec![
            op(0, 0, 10, create("a"), written(5)),
            op(1, 11, 0, update("b", 5), Output::Unknown),
            op(2, 20, 30, Input::Get, found("b", 6)),
            op(2, 31, 40, update("c", 6), written(7)),
        ];
        check(&h).unwrap();
        // Maybe-reads say nothing.
        let h = vec![
            op(0, 0, 10, create("a"), written(5)),
            op(1, 11, 0, Input::Get, Output::Unknown),
        ];
        assert_eq!(check(&h).unwrap().unknown, 1);
    }

    #[test]
    fn maybe_operations_cannot_take_effect_before_they_were_invoked() {
        // The value appears before the (maybe) create that wrote it was even sent.
        let h = vec![
            op(1, 0, 10, Input::Get, found("a", 3)),
            op(0, 20, 0, create("a"), Output::Unknown),
        ];
        assert_rejected(&h);
        // A maybe-update from a version cannot explain a second CAS from that version that
        // was acknowledged after the value changed.
        let h = vec![
            op(0, 0, 10, create("a"), written(5)),
            op(1, 11, 0, update("b", 5), Output::Unknown),
            op(2, 20, 30, Input::Get, found("b", 6)),
            op(3, 40, 50, update("c", 5), written(7)),
        ];
        assert_rejected(&h);
    }

    #[test]
    fn refusals_must_fit_the_state() {
        // A conflict when the version did match and nothing else could have changed it.
        let h = vec![
            op(0, 0, 10, create("a"), written(5)),
            op(1, 20, 30, update("b", 5), Output::Conflict),
        ];
        assert_rejected(&h);
        // AlreadyExists for an absent key.
        let h = vec![op(0, 0, 10, create("a"), Output::AlreadyExists)];
        assert_rejected(&h);
        // NotFound for a present one.
        let h = vec![
            op(0, 0, 10, create("a"), written(5)),
            op(1, 20, 30, Input::Delete, Output::NotFound),
        ];
        assert_rejected(&h);
    }

    #[test]
    fn malformed_operations_are_reported() {
        let h = vec![op(0, 0, 10, Input::Get, written(5))];
        assert!(matches!(check(&h), Err(CheckError::Malformed { .. })));
        let h = vec![op(0, 10, 5, Input::Get, Output::NotFound)];
        assert!(matches!(check(&h), Err(CheckError::Malformed { .. })));
    }

    /// A simulated store with real concurrency: each op applies atomically at a random
    /// instant within its [call, ret] window, some outcomes are lost (unknown).
    fn simulate(seed: u64, clients: usize, ops_per_client: usize, keys: usize) -> Vec<Operation> {
        use rand::{Rng as _, SeedableRng as _};
        let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
        // (apply instant, client, op number) → the op, applied in instant order.
        let mut planned = Vec::new();
        for c in 0..clients {
            let mut t = 0u64;
            for i in 0..ops_per_client {
                let call = t + rng.random_range(0..5);
                let ret = call + rng.random_range(1..40);
                let at = rng.random_range(call..=ret);
                planned.push((at, c, i, call, ret, rng.random_range(0..keys)));
                t = ret + 1;
            }
        }
        planned.sort_unstable();
        let mut store: HashMap<usize, (String, u64)> = HashMap::new();
        let mut rev = 0u64;
        let mut seen_rv: HashMap<(usize, usize), u64> = HashMap::new();
        let mut out = Vec::new();
        for (_, c, i, call, ret, k) in planned {
            let value = format!("c{c}-{i}");
            let input = match rng.random_range(0..4) {
                0 => create(&value),
                1 => Input::Get,
                2 => update(&value, seen_rv.get(&(c, k)).copied().unwrap_or(1)),
                _ => Input::Delete,
            };
            let output = match &input {
                Input::Create { value } if !store.contains_key(&k) => {
                    rev += 1;
                    store.insert(k, (value.clone(), rev));
                    written(rev)
                }
                Input::Create { .. } => Output::AlreadyExists,
                Input::Get => match store.get(&k) {
                    Some((v, rv)) => {
                        seen_rv.insert((c, k), *rv);
                        found(v, *rv)
                    }
                    None => Output::NotFound,
                },
                Input::Update { value, expected_rv } => match store.get(&k) {
                    Some((_, rv)) if rv == expected_rv => {
                        rev += 1;
                        store.insert(k, (value.clone(), rev));
                        written(rev)
                    }
                    Some(_) => Output::Conflict,
                    None => Output::NotFound,
                },
                Input::Delete => match store.remove(&k) {
                    Some(_) => {
                        rev += 1;
                        written(rev)
                    }
                    None => Output::NotFound,
                },
            };
            // 3 % of answers are lost on the way back.
            let output = if rng.random_bool(0.03) {
                Output::Unknown
            } else {
                output
            };
            out.push(Operation {
                client: c,
                key: format!("k{k}"),
                call,
                ret,
                input,
                output,
            });
        }
        out
    }

    #[test]
    fn thousands_of_simulated_operations_check_well_under_a_second() {
        for seed in 0..3 {
            let h = simulate(seed, 8, 500, 4);
            let t = std::time::Instant::now();
            let report = check(&h).unwrap_or_else(|e| panic!("seed {seed}: {e}"));
            let took = t.elapsed();
            assert_eq!(report.operations, 4000);
            assert!(report.unknown > 0);
            assert!(
                took < std::time::Duration::from_millis(500),
                "seed {seed}: {took:?} for {report:?}"
            );
        }
    }

    #[test]
    fn a_planted_stale_read_in_a_simulated_history_is_found() {
        let h = simulate(7, 8, 500, 4);
        let h = with_stale_read(&h).expect("a read after two acknowledged writes");
        let err = check(&h).expect_err("a stale read must be found");
        assert!(matches!(err, CheckError::NotLinearizable { .. }), "{err}");
    }
}
