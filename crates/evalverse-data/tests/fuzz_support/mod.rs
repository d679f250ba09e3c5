//! What every crate's parser fuzz targets (`tests/fuzz.rs`) share: the inputs (structured
//! mutations of real examples through their JSON tree, byte mutations of their text, arbitrary
//! bytes), and a runner that checks a target's property on `PROPTEST_CASES` generated inputs
//! (proptest's own variable, default 256) or, with `FUZZ_SECONDS` set, for that long, turning a
//! panic, a hang or a slow case into a failure that shows the input. scripts/fuzz_long.sh runs
//! every target this way; docs/RELIABILITY.md records the runs. Included with `#[path]`.

#![allow(dead_code)]

use std::fmt::Debug;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Mutex, Once};
use std::time::{Duration, Instant};

use proptest::prelude::*;
use proptest::test_runner::{Config, TestCaseError, TestError, TestRunner};
use serde_json::Value;

/// Text pieces that break parsers: syntax characters of JSON, TOML and CSV, numbers at and
/// past the limits of i64, u64 and f64, a byte order mark, invalid UTF-8, paths that climb out
/// of a folder, and the manifest's N/A.
pub const TOKENS: &[&[u8]] = &[
    b"\"",
    b"\\",
    b"{",
    b"}",
    b"[",
    b"]",
    b"[[",
    b"]]",
    b",",
    b":",
    b"=",
    b"#",
    b"'''",
    b"\"\"\"",
    b"\n",
    b"\r\n",
    b"\r",
    b"\t",
    b" ",
    b"\0",
    b"null",
    b"true",
    b"nan",
    b"NaN",
    b"inf",
    b"-inf",
    b"1e999",
    b"-1e999",
    b"1e-400",
    b"-0",
    b"0",
    b"-1",
    b"4294967296",
    b"9223372036854775808",
    b"18446744073709551616",
    b"0x10",
    b"1.5",
    b"\xef\xbb\xbf",
    b"\xff",
    b"\xc3",
    b"\xed\xa0\x80",
    b"N/A",
    b"..",
    b"../",
    b"/",
    b"/etc/hostname",
    b"/dev/null",
    b"\\u0000",
    b"\\ud800",
    b"\xf0\x9f\x8e\xac",
];

/// A value put into a JSON tree.
#[derive(Debug, Clone)]
pub enum Leaf {
    Null,
    Bool(bool),
    Int(i64),
    Big(u64),
    Float(f64),
    /// A word of the target's vocabulary (its keys, ids and enum names), by index.
    Word(u16),
    Str(String),
    EmptyArray,
    EmptyObject,
}

fn leaf() -> impl Strategy<Value = Leaf> {
    prop_oneof![
        Just(Leaf::Null),
        any::<bool>().prop_map(Leaf::Bool),
        prop_oneof![
            Just(0i64),
            Just(1),
            Just(-1),
            Just(2),
            Just(3),
            Just(i64::MAX),
            Just(i64::MIN),
            -1000i64..1000,
            any::<i64>()
        ]
        .prop_map(Leaf::Int),
        prop_oneof![
            Just(u64::MAX),
            Just(u32::MAX as u64 + 1),
            Just(1u64 << 53),
            any::<u64>()
        ]
        .prop_map(Leaf::Big),
        prop_oneof![
            Just(0.5f64),
            Just(-0.0),
            Just(1e308),
            Just(-1e308),
            Just(5e-324),
            Just(f64::EPSILON),
            Just(1.0 + f64::EPSILON),
            -10.0f64..10.0,
            any::<f64>().prop_filter("JSON numbers are finite", |f| f.is_finite())
        ]
        .prop_map(Leaf::Float),
        any::<u16>().prop_map(Leaf::Word),
        prop_oneof![
            Just(String::new()),
            Just(" ".to_string()),
            Just("N/A".to_string()),
            Just("../x".to_string()),
            Just("/abs/x".to_string()),
            Just("\u{feff}".to_string()),
            ".{0,12}",
            "[a-z_]{1,10}"
        ]
        .prop_map(Leaf::Str),
        Just(Leaf::EmptyArray),
        Just(Leaf::EmptyObject),
    ]
}

/// One edit of a JSON tree; a node is picked by its pre-order index modulo the node count.
#[derive(Debug, Clone)]
pub enum TreeOp {
    Replace {
        at: u32,
        leaf: Leaf,
    },
    Remove {
        at: u32,
    },
    /// Rename the key under which the node sits in its object.
    Rename {
        at: u32,
        key: Leaf,
    },
    /// Put a copy of node `from` in place of node `at` (a value from elsewhere in the file).
    Graft {
        at: u32,
        from: u32,
    },
    /// Add an entry to the object or array at `at` (the node itself when it is neither).
    Insert {
        at: u32,
        key: Leaf,
        leaf: Leaf,
    },
    /// Repeat an array element.
    Repeat {
        at: u32,
        times: u8,
    },
}

fn tree_op() -> impl Strategy<Value = TreeOp> {
    prop_oneof![
        4 => (any::<u32>(), leaf()).prop_map(|(at, leaf)| TreeOp::Replace { at, leaf }),
        2 => any::<u32>().prop_map(|at| TreeOp::Remove { at }),
        1 => (any::<u32>(), leaf()).prop_map(|(at, key)| TreeOp::Rename { at, key }),
        2 => (any::<u32>(), any::<u32>()).prop_map(|(at, from)| TreeOp::Graft { at, from }),
        1 => (any::<u32>(), leaf(), leaf()).prop_map(|(at, key, leaf)| TreeOp::Insert { at, key, leaf }),
        1 => (any::<u32>(), 1u8..40).prop_map(|(at, times)| TreeOp::Repeat { at, times }),
    ]
}

/// One edit of a text's bytes; positions are taken modulo its length.
#[derive(Debug, Clone)]
pub enum ByteOp {
    Delete {
        at: u32,
        len: u8,
    },
    /// Insert a `TOKENS` entry, a vocabulary word or raw bytes.
    Insert {
        at: u32,
        piece: Piece,
    },
    Duplicate {
        at: u32,
        len: u8,
    },
    Truncate {
        at: u32,
    },
    Set {
        at: u32,
        byte: u8,
    },
    SwapLines {
        a: u32,
        b: u32,
    },
    RepeatLine {
        at: u32,
        times: u8,
    },
}

#[derive(Debug, Clone)]
pub enum Piece {
    Token(u16),
    Word(u16),
    Bytes(Vec<u8>),
}

/// Byte edits (also for the formats with their own structured edits, e.g. CSV).
pub fn byte_op_strategy() -> impl Strategy<Value = ByteOp> {
    let piece = prop_oneof![
        3 => any::<u16>().prop_map(Piece::Token),
        2 => any::<u16>().prop_map(Piece::Word),
        1 => proptest::collection::vec(any::<u8>(), 1..8).prop_map(Piece::Bytes),
    ];
    prop_oneof![
        2 => (any::<u32>(), 1u8..32).prop_map(|(at, len)| ByteOp::Delete { at, len }),
        4 => (any::<u32>(), piece).prop_map(|(at, piece)| ByteOp::Insert { at, piece }),
        1 => (any::<u32>(), 1u8..64).prop_map(|(at, len)| ByteOp::Duplicate { at, len }),
        1 => any::<u32>().prop_map(|at| ByteOp::Truncate { at }),
        1 => (any::<u32>(), any::<u8>()).prop_map(|(at, byte)| ByteOp::Set { at, byte }),
        1 => (any::<u32>(), any::<u32>()).prop_map(|(a, b)| ByteOp::SwapLines { a, b }),
        1 => (any::<u32>(), 1u8..20).prop_map(|(at, times)| ByteOp::RepeatLine { at, times }),
    ]
}

/// A generated input: a seed edited through its tree and then its bytes, a seed edited through
/// its bytes only, or bytes / a string made up from nothing.
#[derive(Debug, Clone)]
pub enum Input {
    Tree {
        seed: u16,
        tree: Vec<TreeOp>,
        bytes: Vec<ByteOp>,
    },
    Text {
        seed: u16,
        bytes: Vec<ByteOp>,
    },
    Bytes(Vec<u8>),
    Chars(String),
}

/// Inputs, mostly mutated seeds (those reach past the first syntax check).
pub fn input() -> impl Strategy<Value = Input> {
    prop_oneof![
        6 => (
            any::<u16>(),
            proptest::collection::vec(tree_op(), 1..5),
            proptest::collection::vec(byte_op_strategy(), 0..2)
        )
            .prop_map(|(seed, tree, bytes)| Input::Tree { seed, tree, bytes }),
        3 => (any::<u16>(), proptest::collection::vec(byte_op_strategy(), 1..5))
            .prop_map(|(seed, bytes)| Input::Text { seed, bytes }),
        1 => proptest::collection::vec(any::<u8>(), 0..256).prop_map(Input::Bytes),
        1 => ".{0,200}".prop_map(Input::Chars),
    ]
}

/// The examples a target mutates, as text and (where it parses) as a JSON tree, and a vocabulary
/// of the words in them.
pub struct Seeds {
    pub texts: Vec<Vec<u8>>,
    pub trees: Vec<Option<Value>>,
    pub words: Vec<String>,
    /// Renders an edited tree back into the format's text (None: it cannot be written).
    pub render: fn(&Value) -> Option<String>,
}

impl Seeds {
    /// Seeds of a format whose trees come from `parse` and go back through `render`.
    pub fn new(
        texts: Vec<Vec<u8>>,
        parse: impl Fn(&str) -> Option<Value>,
        render: fn(&Value) -> Option<String>,
        extra_words: &[&str],
    ) -> Seeds {
        assert!(!texts.is_empty(), "a fuzz target needs a seed");
        let trees: Vec<Option<Value>> = texts
            .iter()
            .map(|t| std::str::from_utf8(t).ok().and_then(&parse))
            .collect();
        let mut words: Vec<String> = extra_words.iter().map(|w| w.to_string()).collect();
        for t in trees.iter().flatten() {
            collect_words(t, &mut words);
        }
        words.sort();
        words.dedup();
        Seeds {
            texts,
            trees,
            words,
            render,
        }
    }

    /// JSON seeds.
    pub fn json(texts: Vec<Vec<u8>>, extra_words: &[&str]) -> Seeds {
        Seeds::new(
            texts,
            |t| serde_json::from_str(t).ok(),
            |v| serde_json::to_string_pretty(v).ok(),
            extra_words,
        )
    }

    pub fn word(&self, i: u16) -> &str {
        match self.words.len() {
            0 => "",
            n => &self.words[i as usize % n],
        }
    }

    fn leaf(&self, l: &Leaf) -> Value {
        match l {
            Leaf::Null => Value::Null,
            Leaf::Bool(b) => Value::Bool(*b),
            Leaf::Int(i) => Value::from(*i),
            Leaf::Big(u) => Value::from(*u),
            Leaf::Float(f) => serde_json::Number::from_f64(*f).map_or(Value::Null, Value::Number),
            Leaf::Word(i) => Value::String(self.word(*i).to_string()),
            Leaf::Str(s) => Value::String(s.clone()),
            Leaf::EmptyArray => Value::Array(vec![]),
            Leaf::EmptyObject => Value::Object(Default::default()),
        }
    }

    fn key(&self, l: &Leaf) -> String {
        match self.leaf(l) {
            Value::String(s) => s,
            other => other.to_string(),
        }
    }

    /// The bytes an input stands for.
    pub fn materialise(&self, input: &Input) -> Vec<u8> {
        match input {
            Input::Tree { seed, tree, bytes } => {
                let i = *seed as usize % self.texts.len();
                let text = match &self.trees[i] {
                    Some(t) => {
                        let mut t = t.clone();
                        for op in tree {
                            self.apply_tree(&mut t, op);
                        }
                        (self.render)(&t)
                            .map(String::into_bytes)
                            .unwrap_or_else(|| self.texts[i].clone())
                    }
                    None => self.texts[i].clone(),
                };
                self.apply_bytes(text, bytes)
            }
            Input::Text { seed, bytes } => {
                let i = *seed as usize % self.texts.len();
                self.apply_bytes(self.texts[i].clone(), bytes)
            }
            Input::Bytes(b) => b.clone(),
            Input::Chars(s) => s.clone().into_bytes(),
        }
    }

    fn apply_tree(&self, root: &mut Value, op: &TreeOp) {
        let paths = node_paths(root);
        let pick = |at: u32| &paths[at as usize % paths.len()];
        match op {
            TreeOp::Replace { at, leaf } => {
                if let Some(n) = node_mut(root, pick(*at)) {
                    *n = self.leaf(leaf);
                }
            }
            TreeOp::Remove { at } => {
                let path = pick(*at).clone();
                if let Some((last, parent)) = path.split_last() {
                    match (node_mut(root, parent), last) {
                        (Some(Value::Object(m)), Seg::Key(k)) => {
                            m.remove(k);
                        }
                        (Some(Value::Array(a)), Seg::Index(i)) if *i < a.len() => {
                            a.remove(*i);
                        }
                        _ => {}
                    }
                }
            }
            TreeOp::Rename { at, key } => {
                let path = pick(*at).clone();
                if let Some((Seg::Key(k), parent)) = path.split_last() {
                    if let Some(Value::Object(m)) = node_mut(root, parent) {
                        if let Some(v) = m.remove(k) {
                            m.insert(self.key(key), v);
                        }
                    }
                }
            }
            TreeOp::Graft { at, from } => {
                let v = node(root, pick(*from)).cloned();
                if let (Some(v), Some(n)) = (v, node_mut(root, pick(*at))) {
                    *n = v;
                }
            }
            TreeOp::Insert { at, key, leaf } => {
                let (k, v) = (self.key(key), self.leaf(leaf));
                match node_mut(root, pick(*at)) {
                    Some(Value::Object(m)) => {
                        m.insert(k, v);
                    }
                    Some(Value::Array(a)) => a.push(v),
                    Some(n) => *n = v,
                    None => {}
                }
            }
            TreeOp::Repeat { at, times } => {
                let path = pick(*at).clone();
                if let Some((Seg::Index(i), parent)) = path.split_last() {
                    if let Some(Value::Array(a)) = node_mut(root, parent) {
                        let v = a[*i].clone();
                        for _ in 0..*times {
                            a.insert(*i, v.clone());
                        }
                    }
                }
            }
        }
    }

    pub fn apply_bytes(&self, mut b: Vec<u8>, ops: &[ByteOp]) -> Vec<u8> {
        for op in ops {
            let pos = |at: u32, len: usize| at as usize % (len + 1);
            match op {
                ByteOp::Delete { at, len } => {
                    let s = pos(*at, b.len());
                    let e = (s + *len as usize).min(b.len());
                    b.drain(s..e);
                }
                ByteOp::Insert { at, piece } => {
                    let s = pos(*at, b.len());
                    let bytes: Vec<u8> = match piece {
                        Piece::Token(i) => TOKENS[*i as usize % TOKENS.len()].to_vec(),
                        Piece::Word(i) => self.word(*i).as_bytes().to_vec(),
                        Piece::Bytes(v) => v.clone(),
                    };
                    b.splice(s..s, bytes);
                }
                ByteOp::Duplicate { at, len } => {
                    let s = pos(*at, b.len());
                    let e = (s + *len as usize).min(b.len());
                    let copy = b[s..e].to_vec();
                    b.splice(e..e, copy);
                }
                ByteOp::Truncate { at } => {
                    let s = pos(*at, b.len());
                    b.truncate(s);
                }
                ByteOp::Set { at, byte } => {
                    if !b.is_empty() {
                        let s = *at as usize % b.len();
                        b[s] = *byte;
                    }
                }
                ByteOp::SwapLines { a, b: c } => {
                    let mut lines: Vec<Vec<u8>> =
                        b.split(|&x| x == b'\n').map(<[u8]>::to_vec).collect();
                    let n = lines.len();
                    lines.swap(*a as usize % n, *c as usize % n);
                    b = lines.join(&b'\n');
                }
                ByteOp::RepeatLine { at, times } => {
                    let mut lines: Vec<Vec<u8>> =
                        b.split(|&x| x == b'\n').map(<[u8]>::to_vec).collect();
                    let i = *at as usize % lines.len();
                    let l = lines[i].clone();
                    for _ in 0..*times {
                        lines.insert(i, l.clone());
                    }
                    b = lines.join(&b'\n');
                }
            }
        }
        b
    }
}

fn collect_words(v: &Value, out: &mut Vec<String>) {
    match v {
        Value::String(s) if s.len() <= 40 => out.push(s.clone()),
        Value::Array(a) => a.iter().for_each(|x| collect_words(x, out)),
        Value::Object(m) => {
            for (k, x) in m {
                out.push(k.clone());
                collect_words(x, out);
            }
        }
        _ => {}
    }
}

#[derive(Debug, Clone)]
enum Seg {
    Key(String),
    Index(usize),
}

fn node_paths(root: &Value) -> Vec<Vec<Seg>> {
    fn walk(v: &Value, here: &mut Vec<Seg>, out: &mut Vec<Vec<Seg>>) {
        out.push(here.clone());
        match v {
            Value::Array(a) => {
                for (i, x) in a.iter().enumerate() {
                    here.push(Seg::Index(i));
                    walk(x, here, out);
                    here.pop();
                }
            }
            Value::Object(m) => {
                for (k, x) in m {
                    here.push(Seg::Key(k.clone()));
                    walk(x, here, out);
                    here.pop();
                }
            }
            _ => {}
        }
    }
    let mut out = Vec::new();
    walk(root, &mut Vec::new(), &mut out);
    out
}

fn node<'a>(root: &'a Value, path: &[Seg]) -> Option<&'a Value> {
    path.iter().try_fold(root, |v, s| match s {
        Seg::Key(k) => v.get(k),
        Seg::Index(i) => v.get(i),
    })
}

fn node_mut<'a>(root: &'a mut Value, path: &[Seg]) -> Option<&'a mut Value> {
    path.iter().try_fold(root, |v, s| match s {
        Seg::Key(k) => v.get_mut(k),
        Seg::Index(i) => v.get_mut(i),
    })
}

/// Whether two JSON trees are equal, numbers within a relative 1e-15: serde_json's default
/// float parser (without its `float_roundtrip` feature) can read back a float it wrote one ulp
/// off, for numbers of 16 or more significant digits.
pub fn same_json(a: &Value, b: &Value) -> bool {
    match (a, b) {
        (Value::Number(x), Value::Number(y)) => match (x.as_f64(), y.as_f64()) {
            (Some(x), Some(y)) => x == y || (x - y).abs() <= 1e-15 * x.abs().max(y.abs()),
            _ => x == y,
        },
        (Value::Array(x), Value::Array(y)) => {
            x.len() == y.len() && x.iter().zip(y).all(|(x, y)| same_json(x, y))
        }
        (Value::Object(x), Value::Object(y)) => {
            x.len() == y.len()
                && x.iter()
                    .all(|(k, v)| y.get(k).is_some_and(|w| same_json(v, w)))
        }
        _ => a == b,
    }
}

/// The input as a Rust string literal, for failure messages (long inputs are cut).
pub fn show(bytes: &[u8]) -> String {
    let s = String::from_utf8_lossy(bytes);
    let cut: String = s.chars().take(3000).collect();
    format!(
        "{cut:?}{}",
        if s.chars().count() > 3000 { " ..." } else { "" }
    )
}

/// Fails the case with `message` unless `ok`.
#[macro_export]
macro_rules! ensure {
    ($ok:expr, $($fmt:tt)*) => {
        if !$ok {
            return Err(format!($($fmt)*));
        }
    };
}

/// A case running longer than this is reported as slow (a parser should take milliseconds).
const SLOW: Duration = Duration::from_secs(5);
/// A case running longer than this stops the process with its input printed: a hang.
const HANG: Duration = Duration::from_secs(60);

thread_local! {
    static LAST_PANIC: std::cell::RefCell<String> = const { std::cell::RefCell::new(String::new()) };
    /// What the cases of the target running on this thread came to ("accepted", "refused", ...).
    static TALLY: std::cell::RefCell<std::collections::BTreeMap<&'static str, usize>> =
        const { std::cell::RefCell::new(std::collections::BTreeMap::new()) };
}

/// The message and place of the last panic on this thread (panics are not printed while a
/// target runs).
pub fn last_panic() -> String {
    LAST_PANIC.with(|p| p.borrow().clone())
}

/// Count an outcome of the current case, for the target's summary line.
pub fn tally(outcome: &'static str) {
    TALLY.with(|t| *t.borrow_mut().entry(outcome).or_default() += 1);
}

/// The case each running target is on (its start and input), for the hang watchdog.
type InFlight = Vec<(String, Option<(Instant, String)>)>;
static IN_FLIGHT: Mutex<InFlight> = Mutex::new(Vec::new());

fn install_hooks() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        // Panics are the failures being looked for: record the message and location for the
        // report instead of printing each one while proptest shrinks.
        std::panic::set_hook(Box::new(|info| {
            let msg = info.to_string();
            LAST_PANIC.with(|p| *p.borrow_mut() = msg);
        }));
        std::thread::spawn(|| loop {
            std::thread::sleep(Duration::from_millis(500));
            let flight = IN_FLIGHT.lock().unwrap_or_else(|e| e.into_inner());
            let hung = flight.iter().find_map(|(name, case)| match case {
                Some((t, input)) if t.elapsed() > HANG => Some((name, input)),
                _ => None,
            });
            if let Some((name, input)) = hung {
                eprintln!(
                    "fuzz {name}: HANG: a case ran over {}s; input: {input}",
                    HANG.as_secs()
                );
                std::process::exit(3);
            }
        });
    });
}

/// Check `property` on generated inputs: `PROPTEST_CASES` of them (default 256), or as many as
/// fit in `FUZZ_SECONDS` seconds when that is set. A failure (an `Err`, a panic, a case slower
/// than 5 s) is shrunk by proptest and printed with its input; with `FUZZ_SECONDS` the run goes
/// on after one, and fails at the end. Prints one summary line: cases, time, failures.
pub fn fuzz<S>(name: &str, strategy: S, property: impl Fn(&S::Value) -> Result<(), String>)
where
    S: Strategy,
    S::Value: Debug,
{
    install_hooks();
    let config = Config {
        failure_persistence: None,
        max_shrink_iters: 2048,
        ..Config::default()
    };
    let seconds: Option<f64> = std::env::var("FUZZ_SECONDS")
        .ok()
        .and_then(|s| s.parse().ok());
    let cases = AtomicUsize::new(0);
    let start = Instant::now();
    let mut failures: Vec<String> = Vec::new();
    IN_FLIGHT
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .push((name.to_string(), None));
    loop {
        let mut runner = TestRunner::new(config.clone());
        let result = runner.run(&strategy, |value| {
            cases.fetch_add(1, Ordering::Relaxed);
            let shown = format!("{value:?}");
            set_in_flight(name, Some(shown));
            let t = Instant::now();
            let outcome = catch_unwind(AssertUnwindSafe(|| property(&value)));
            let took = t.elapsed();
            set_in_flight(name, None);
            match outcome {
                Ok(Ok(())) if took > SLOW => Err(TestCaseError::fail(format!(
                    "slow: {:.1}s for one input",
                    took.as_secs_f64()
                ))),
                Ok(Ok(())) => Ok(()),
                Ok(Err(m)) => Err(TestCaseError::fail(m)),
                Err(_) => Err(TestCaseError::fail(format!(
                    "panicked: {}",
                    LAST_PANIC.with(|p| p.borrow().clone())
                ))),
            }
        });
        match result {
            Ok(()) => {}
            Err(TestError::Fail(reason, value)) => {
                let report = format!("{reason}\n  minimal input: {value:?}");
                eprintln!("fuzz {name}: FAILURE: {report}");
                failures.push(report);
            }
            Err(TestError::Abort(reason)) => {
                eprintln!("fuzz {name}: ABORT: {reason}");
                failures.push(reason.to_string());
            }
        }
        let elapsed = start.elapsed().as_secs_f64();
        match seconds {
            Some(s) if elapsed < s => continue,
            _ => break,
        }
    }
    IN_FLIGHT
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .retain(|(n, _)| n != name);
    let outcomes: Vec<String> = TALLY.with(|t| {
        std::mem::take(&mut *t.borrow_mut())
            .into_iter()
            .map(|(k, n)| format!("{k} {n}"))
            .collect()
    });
    let summary = format!(
        "fuzz {name}: {} cases in {:.1}s, {} failure(s) ({})",
        cases.load(Ordering::Relaxed),
        start.elapsed().as_secs_f64(),
        failures.len(),
        outcomes.join(", ")
    );
    eprintln!("{summary}");
    if !failures.is_empty() {
        panic!("{summary}:\n{}", failures.join("\n"));
    }
}

fn set_in_flight(name: &str, input: Option<String>) {
    let mut f = IN_FLIGHT.lock().unwrap_or_else(|e| e.into_inner());
    if let Some(e) = f.iter_mut().find(|(n, _)| n == name) {
        e.1 = input.map(|i| (Instant::now(), i));
    }
}
