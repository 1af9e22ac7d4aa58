//! A small, bounded pickle reader: enough for the pickle numpy writes inside an `.npy` file
//! of dtype `object` (`np.save` of an array of Python lists, as in Keras' `imdb.npz`), in
//! protocols 2 to 5, written by Python 2 or 3. It never runs code: `GLOBAL` and `REDUCE`
//! only record names and arguments, which [`object_array_of_int_lists`] then checks against
//! numpy's `_reconstruct` layout.
//!
//! Supported opcodes: `PROTO FRAME STOP MARK POP POP_MARK DUP`, `NONE NEWTRUE NEWFALSE`,
//! `INT BININT BININT1 BININT2 LONG1 LONG4` (integers up to 64 bits), `SHORT_BINSTRING
//! BINSTRING SHORT_BINUNICODE BINUNICODE BINUNICODE8 SHORT_BINBYTES BINBYTES BINBYTES8`,
//! `EMPTY_LIST LIST APPEND APPENDS EMPTY_TUPLE TUPLE TUPLE1 TUPLE2 TUPLE3 EMPTY_DICT SETITEM
//! SETITEMS`, `GLOBAL STACK_GLOBAL REDUCE NEWOBJ BUILD`, `BINPUT LONG_BINPUT MEMOIZE BINGET
//! LONG_BINGET`. Anything else is an `Error::Data` naming the opcode and its offset.
//!
//! Objects live in one flat arena and are referred to by index, so a hostile pickle can
//! neither build a deep chain that overflows the stack when dropped nor a reference cycle
//! that leaks; memory grows at most linearly with the input, and the input size is checked
//! against the host-memory cap before parsing.

use std::collections::HashMap;

use crate::error::{Error, Result};
use crate::limits;

/// A value on the pickle stack: a scalar, or a reference into the arena.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Value {
    None,
    Bool(bool),
    Int(i64),
    Ref(u32),
}

/// An object in the arena.
#[derive(Clone, Debug, PartialEq)]
pub(crate) enum Node {
    Str(String),
    Bytes(Vec<u8>),
    List(Vec<Value>),
    Tuple(Vec<Value>),
    Dict(Vec<(Value, Value)>),
    Global {
        module: String,
        name: String,
    },
    /// `callable(*args)` from `REDUCE` or `NEWOBJ`, with the state a `BUILD` gave it.
    Object {
        callable: Value,
        args: Value,
        state: Option<Value>,
    },
}

#[derive(Clone, Copy, Debug)]
enum Slot {
    Mark,
    V(Value),
}

/// A parsed pickle: the arena and the value `STOP` returned.
#[derive(Debug)]
pub(crate) struct Pickle {
    nodes: Vec<Node>,
    pub(crate) root: Value,
}

impl Pickle {
    /// The arena object `v` refers to, if it is a reference.
    pub(crate) fn node(&self, v: Value) -> Option<&Node> {
        match v {
            Value::Ref(i) => self.nodes.get(i as usize),
            _ => None,
        }
    }

    /// A short description of `v` for error messages.
    pub(crate) fn describe(&self, v: Value) -> String {
        match v {
            Value::None => "None".into(),
            Value::Bool(b) => format!("bool {b}"),
            Value::Int(i) => format!("int {i}"),
            Value::Ref(_) => match self.node(v) {
                Some(Node::Str(s)) => format!("str {s:?}"),
                Some(Node::Bytes(b)) => format!("bytes of length {}", b.len()),
                Some(Node::List(l)) => format!("list of length {}", l.len()),
                Some(Node::Tuple(t)) => format!("tuple of length {}", t.len()),
                Some(Node::Dict(d)) => format!("dict of length {}", d.len()),
                Some(Node::Global { module, name }) => format!("global {module}.{name}"),
                Some(Node::Object { callable, .. }) => {
                    format!("object made by {}", self.describe(*callable))
                }
                None => "dangling reference".into(),
            },
        }
    }

    /// Text of a `str`, or of a Python 2 byte string (ASCII/UTF-8).
    pub(crate) fn text(&self, v: Value) -> Option<&str> {
        match self.node(v)? {
            Node::Str(s) => Some(s),
            Node::Bytes(b) => std::str::from_utf8(b).ok(),
            _ => None,
        }
    }

    /// Items of a tuple or list.
    pub(crate) fn items(&self, v: Value) -> Option<&[Value]> {
        match self.node(v)? {
            Node::Tuple(t) | Node::List(t) => Some(t),
            _ => None,
        }
    }
}

/// Bytes are read with bounds checks; `pos` names offsets in errors.
struct Reader<'a> {
    buf: &'a [u8],
    pos: usize,
    source: &'a str,
}

impl<'a> Reader<'a> {
    fn err(&self, msg: impl std::fmt::Display) -> Error {
        Error::Data(format!(
            "{}: pickle at byte {}: {msg}",
            self.source, self.pos
        ))
    }

    fn take(&mut self, n: usize) -> Result<&'a [u8]> {
        let end = self
            .pos
            .checked_add(n)
            .filter(|&e| e <= self.buf.len())
            .ok_or_else(|| {
                self.err(format!(
                    "truncated: {n} bytes wanted, {} left",
                    self.buf.len() - self.pos
                ))
            })?;
        let s = &self.buf[self.pos..end];
        self.pos = end;
        Ok(s)
    }

    fn u8(&mut self) -> Result<u8> {
        Ok(self.take(1)?[0])
    }

    fn u16(&mut self) -> Result<u16> {
        let b = self.take(2)?;
        Ok(u16::from_le_bytes([b[0], b[1]]))
    }

    fn u32(&mut self) -> Result<u32> {
        let b = self.take(4)?;
        Ok(u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
    }

    fn u64(&mut self) -> Result<u64> {
        let b = self.take(8)?;
        let mut a = [0u8; 8];
        a.copy_from_slice(b);
        Ok(u64::from_le_bytes(a))
    }

    /// A length field, checked against what is left of the input.
    fn len(&mut self, width: usize) -> Result<usize> {
        let n = match width {
            1 => u64::from(self.u8()?),
            4 => u64::from(self.u32()?),
            _ => self.u64()?,
        };
        let left = self.buf.len() - self.pos;
        usize::try_from(n)
            .ok()
            .filter(|&n| n <= left)
            .ok_or_else(|| self.err(format!("length {n} runs past the end ({left} bytes left)")))
    }

    /// A newline-terminated line of at most 256 bytes (GLOBAL, INT).
    fn line(&mut self) -> Result<&'a str> {
        let rest = &self.buf[self.pos..];
        let end = rest
            .iter()
            .take(257)
            .position(|&b| b == b'\n')
            .ok_or_else(|| self.err("line without a newline within 256 bytes"))?;
        let s = std::str::from_utf8(&rest[..end]).map_err(|_| self.err("line is not UTF-8"))?;
        self.pos += end + 1;
        Ok(s)
    }
}

/// Parses `bytes` (a whole pickle, `STOP` included). `source` names the file in errors.
pub(crate) fn parse(bytes: &[u8], source: &str) -> Result<Pickle> {
    // Every opcode is at least one byte and adds at most one node and one stack value.
    let per_byte = std::mem::size_of::<Node>() + std::mem::size_of::<Slot>();
    limits::check_host_elems(
        &format!("{source}: parsing a pickle of {} bytes", bytes.len()),
        bytes.len(),
        per_byte,
    )?;
    let mut r = Reader {
        buf: bytes,
        pos: 0,
        source,
    };
    let mut nodes: Vec<Node> = Vec::new();
    let mut stack: Vec<Slot> = Vec::new();
    let mut memo: HashMap<u32, Value> = HashMap::new();

    fn push_node(nodes: &mut Vec<Node>, stack: &mut Vec<Slot>, n: Node) {
        stack.push(Slot::V(Value::Ref(nodes.len() as u32)));
        nodes.push(n);
    }

    loop {
        let at = r.pos;
        let op = r.u8()?;
        let underflow = || {
            Error::Data(format!(
                "{source}: pickle at byte {at}: opcode 0x{op:02x} on a stack without enough values"
            ))
        };
        let pop = |stack: &mut Vec<Slot>| match stack.pop() {
            Some(Slot::V(v)) => Ok(v),
            _ => Err(underflow()),
        };
        // Values down to the topmost MARK, which is removed.
        let pop_mark = |stack: &mut Vec<Slot>| -> Result<Vec<Value>> {
            let m = stack
                .iter()
                .rposition(|s| matches!(s, Slot::Mark))
                .ok_or_else(|| {
                    Error::Data(format!(
                        "{source}: pickle at byte {at}: opcode 0x{op:02x} without a MARK"
                    ))
                })?;
            let items = stack[m + 1..]
                .iter()
                .map(|s| match s {
                    Slot::V(v) => *v,
                    Slot::Mark => Value::None,
                })
                .collect();
            stack.truncate(m);
            Ok(items)
        };
        match op {
            0x80 => {
                let p = r.u8()?;
                if p > 5 {
                    return Err(r.err(format!("unsupported pickle protocol {p}")));
                }
            }
            0x95 => {
                r.u64()?;
            }
            b'.' => {
                let root = pop(&mut stack)?;
                return Ok(Pickle { nodes, root });
            }
            b'(' => stack.push(Slot::Mark),
            b'0' => {
                stack.pop().ok_or_else(underflow)?;
            }
            b'1' => {
                pop_mark(&mut stack)?;
            }
            b'2' => {
                let top = *stack.last().ok_or_else(underflow)?;
                stack.push(top);
            }
            b'N' => stack.push(Slot::V(Value::None)),
            0x88 => stack.push(Slot::V(Value::Bool(true))),
            0x89 => stack.push(Slot::V(Value::Bool(false))),
            b'I' => {
                let line = r.line()?;
                let v = match line {
                    "01" => Value::Bool(true),
                    "00" => Value::Bool(false),
                    t => Value::Int(
                        t.parse()
                            .map_err(|_| r.err(format!("INT {t:?} is not a 64-bit integer")))?,
                    ),
                };
                stack.push(Slot::V(v));
            }
            b'J' => stack.push(Slot::V(Value::Int(i64::from(r.u32()? as i32)))),
            b'K' => stack.push(Slot::V(Value::Int(i64::from(r.u8()?)))),
            b'M' => stack.push(Slot::V(Value::Int(i64::from(r.u16()?)))),
            0x8a | 0x8b => {
                let n = r.len(if op == 0x8a { 1 } else { 4 })?;
                if n > 8 {
                    return Err(r.err(format!("integer of {n} bytes exceeds 64 bits")));
                }
                let b = r.take(n)?;
                // Little-endian two's complement, sign-extended from its top byte.
                let fill = if b.last().is_some_and(|&t| t & 0x80 != 0) {
                    0xff
                } else {
                    0
                };
                let mut a = [fill; 8];
                a[..n].copy_from_slice(b);
                stack.push(Slot::V(Value::Int(i64::from_le_bytes(a))));
            }
            b'U' | b'T' | b'C' | b'B' | 0x8e => {
                let width = match op {
                    b'U' | b'C' => 1,
                    b'T' | b'B' => 4,
                    _ => 8,
                };
                let n = r.len(width)?;
                let b = r.take(n)?.to_vec();
                push_node(&mut nodes, &mut stack, Node::Bytes(b));
            }
            0x8c | b'X' | 0x8d => {
                let width = match op {
                    0x8c => 1,
                    b'X' => 4,
                    _ => 8,
                };
                let n = r.len(width)?;
                let s = std::str::from_utf8(r.take(n)?)
                    .map_err(|_| r.err("string is not UTF-8"))?
                    .to_string();
                push_node(&mut nodes, &mut stack, Node::Str(s));
            }
            b']' => push_node(&mut nodes, &mut stack, Node::List(Vec::new())),
            b')' => push_node(&mut nodes, &mut stack, Node::Tuple(Vec::new())),
            b'}' => push_node(&mut nodes, &mut stack, Node::Dict(Vec::new())),
            b'l' => {
                let items = pop_mark(&mut stack)?;
                push_node(&mut nodes, &mut stack, Node::List(items));
            }
            b't' => {
                let items = pop_mark(&mut stack)?;
                push_node(&mut nodes, &mut stack, Node::Tuple(items));
            }
            0x85..=0x87 => {
                let n = usize::from(op - 0x84);
                let mut items = Vec::with_capacity(n);
                for _ in 0..n {
                    items.push(pop(&mut stack)?);
                }
                items.reverse();
                push_node(&mut nodes, &mut stack, Node::Tuple(items));
            }
            b'a' | b'e' => {
                let items = if op == b'a' {
                    vec![pop(&mut stack)?]
                } else {
                    pop_mark(&mut stack)?
                };
                let target = match stack.last() {
                    Some(Slot::V(Value::Ref(i))) => nodes.get_mut(*i as usize),
                    _ => None,
                };
                match target {
                    Some(Node::List(l)) => l.extend(items),
                    _ => return Err(r.err("APPEND(S) to something that is not a list")),
                }
            }
            b's' | b'u' => {
                let items = if op == b's' {
                    let v = pop(&mut stack)?;
                    let k = pop(&mut stack)?;
                    vec![k, v]
                } else {
                    pop_mark(&mut stack)?
                };
                if items.len() % 2 != 0 {
                    return Err(r.err("SETITEMS with an odd number of values"));
                }
                let target = match stack.last() {
                    Some(Slot::V(Value::Ref(i))) => nodes.get_mut(*i as usize),
                    _ => None,
                };
                match target {
                    Some(Node::Dict(d)) => d.extend(items.chunks(2).map(|p| (p[0], p[1]))),
                    _ => return Err(r.err("SETITEM(S) on something that is not a dict")),
                }
            }
            b'c' => {
                let module = r.line()?.to_string();
                let name = r.line()?.to_string();
                push_node(&mut nodes, &mut stack, Node::Global { module, name });
            }
            0x93 => {
                let name = pop(&mut stack)?;
                let module = pop(&mut stack)?;
                let text = |v: Value| match v {
                    Value::Ref(i) => match nodes.get(i as usize) {
                        Some(Node::Str(s)) => Some(s.clone()),
                        _ => None,
                    },
                    _ => None,
                };
                let (Some(module), Some(name)) = (text(module), text(name)) else {
                    return Err(r.err("STACK_GLOBAL needs two strings"));
                };
                push_node(&mut nodes, &mut stack, Node::Global { module, name });
            }
            b'R' | 0x81 => {
                let args = pop(&mut stack)?;
                let callable = pop(&mut stack)?;
                push_node(
                    &mut nodes,
                    &mut stack,
                    Node::Object {
                        callable,
                        args,
                        state: None,
                    },
                );
            }
            b'b' => {
                let st = pop(&mut stack)?;
                let target = match stack.last() {
                    Some(Slot::V(Value::Ref(i))) => nodes.get_mut(*i as usize),
                    _ => None,
                };
                match target {
                    Some(Node::Object { state, .. }) => *state = Some(st),
                    _ => return Err(r.err("BUILD on something that is not an object")),
                }
            }
            b'q' | b'r' | 0x94 => {
                let key = match op {
                    b'q' => u32::from(r.u8()?),
                    b'r' => r.u32()?,
                    _ => memo.len() as u32,
                };
                let top = match stack.last() {
                    Some(Slot::V(v)) => *v,
                    _ => return Err(underflow()),
                };
                memo.insert(key, top);
            }
            b'h' | b'j' => {
                let key = if op == b'h' {
                    u32::from(r.u8()?)
                } else {
                    r.u32()?
                };
                let v = *memo
                    .get(&key)
                    .ok_or_else(|| r.err(format!("memo key {key} was never stored")))?;
                stack.push(Slot::V(v));
            }
            other => {
                r.pos = at;
                return Err(r.err(format!(
                    "unsupported pickle opcode 0x{other:02x} ({:?})",
                    char::from(other)
                )));
            }
        }
    }
}

/// Whether `v` is the global `module.name`, with numpy's `core` module under either of its
/// names (`numpy.core.multiarray` before numpy 2, `numpy._core.multiarray` since).
fn is_global(p: &Pickle, v: Value, module: &str, name: &str) -> bool {
    match p.node(v) {
        Some(Node::Global { module: m, name: n }) => {
            let m = m.replace("numpy._core", "numpy.core");
            m == module && n == name
        }
        _ => false,
    }
}

/// Reads what numpy pickles for a 1-D `object` array whose elements are lists (or tuples)
/// of Python ints: `numpy.core.multiarray._reconstruct(numpy.ndarray, (0,), b'b')` built
/// with the state `(version, shape, dtype('O8'), is_fortran, [element, ...])`.
/// `source` names the file in errors.
pub(crate) fn object_array_of_int_lists(p: &Pickle, source: &str) -> Result<Vec<Vec<i64>>> {
    let bad = |m: String| Error::Data(format!("{source}: object array pickle: {m}"));
    let (callable, state) = match p.node(p.root) {
        Some(Node::Object {
            callable,
            state: Some(state),
            ..
        }) => (*callable, *state),
        _ => {
            return Err(bad(format!(
                "expected a numpy array, found {}",
                p.describe(p.root)
            )));
        }
    };
    if !is_global(p, callable, "numpy.core.multiarray", "_reconstruct") {
        return Err(bad(format!(
            "expected numpy.core.multiarray._reconstruct, found {}",
            p.describe(callable)
        )));
    }
    let st = p
        .items(state)
        .ok_or_else(|| bad(format!("state is a {}", p.describe(state))))?;
    // (version, shape, dtype, fortran, data), or the older 4-tuple without the version.
    let st = match st.len() {
        5 => &st[1..],
        4 => st,
        n => return Err(bad(format!("state tuple has {n} items, expected 4 or 5"))),
    };
    let shape: Vec<i64> = p
        .items(st[0])
        .and_then(|s| {
            s.iter()
                .map(|v| match v {
                    Value::Int(i) => Some(*i),
                    _ => None,
                })
                .collect()
        })
        .ok_or_else(|| bad(format!("shape is a {}", p.describe(st[0]))))?;
    let dtype_ok = match p.node(st[1]) {
        Some(Node::Object { callable, args, .. }) if is_global(p, *callable, "numpy", "dtype") => p
            .items(*args)
            .and_then(|a| a.first())
            .and_then(|&d| p.text(d))
            .is_some_and(|d| d.starts_with('O')),
        _ => false,
    };
    if !dtype_ok {
        return Err(bad(format!(
            "dtype is not object ('O'): {}",
            p.describe(st[1])
        )));
    }
    let &[n] = shape.as_slice() else {
        return Err(bad(format!("shape {shape:?} is not 1-D")));
    };
    let data = match p.node(st[3]) {
        Some(Node::List(d)) => d,
        _ => {
            return Err(bad(format!(
                "data is a {}, expected a list",
                p.describe(st[3])
            )));
        }
    };
    if usize::try_from(n).ok() != Some(data.len()) {
        return Err(bad(format!(
            "shape ({n},) but the data list has {} elements",
            data.len()
        )));
    }
    data.iter()
        .enumerate()
        .map(|(i, &e)| {
            let items = p.items(e).ok_or_else(|| {
                bad(format!(
                    "element {i} is a {}, expected a list of ints",
                    p.describe(e)
                ))
            })?;
            items
                .iter()
                .enumerate()
                .map(|(j, &v)| match v {
                    Value::Int(x) => Ok(x),
                    other => Err(bad(format!(
                        "element {i}, item {j} is a {}, expected an int",
                        p.describe(other)
                    ))),
                })
                .collect()
        })
        .collect()
}

#[cfg(test)]
#[path = "pickle_tests.rs"]
pub(crate) mod tests;
