//! Restricted unpickler for PyTorch state dicts (`data.pkl` inside a `.pth` zip).
//!
//! A pickle is a program for a stack machine, and `GLOBAL` can name any Python callable — which is
//! how a malicious checkpoint runs `os.system`. We never call anything: the only globals accepted
//! are the handful a state dict is made of (tensor rebuild functions, storage classes,
//! `OrderedDict`), each mapped to a Rust value; any other global is refused with its name.
//! The machine itself is iterative (no recursion), every length is checked against the input,
//! so hostile input cannot overflow the stack or make us read out of bounds.

use std::collections::HashMap;

/// Element type of a torch storage.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DType {
    F16,
    BF16,
    F32,
}

impl DType {
    pub fn size(self) -> usize {
        match self {
            DType::F16 | DType::BF16 => 2,
            DType::F32 => 4,
        }
    }
    pub fn name(self) -> &'static str {
        match self {
            DType::F16 => "F16",
            DType::BF16 => "BF16",
            DType::F32 => "F32",
        }
    }
}

/// The callables a state dict may name.
#[derive(Clone, Copy, Debug, PartialEq)]
enum Global {
    RebuildTensorV2,
    RebuildParameter,
    OrderedDict,
    Storage(DType),
}

/// A tensor as the pickle describes it: a view (offset, shape, strides in elements) into a storage
/// saved as a separate zip entry `data/<key>`.
#[derive(Clone, Debug, PartialEq)]
pub struct TensorRef {
    pub storage_key: String,
    pub dtype: DType,
    /// Elements in the storage (as the pickle claims; checked against the zip entry later).
    pub storage_numel: u64,
    pub offset: u64,
    pub shape: Vec<u64>,
    pub stride: Vec<u64>,
}

#[derive(Clone, Debug, PartialEq)]
enum V {
    None,
    Bool(bool),
    Int(i64),
    Float(f64),
    Str(String),
    Bytes(Vec<u8>),
    Tuple(Vec<V>),
    List(Vec<V>),
    Dict(Vec<(V, V)>),
    Global(Global),
    Storage { dtype: DType, key: String, numel: u64 },
    Tensor(TensorRef),
    Mark,
}

/// Deepest container nesting accepted (a state dict needs 3); keeps recursive clone/drop safe.
const MAX_DEPTH: usize = 32;
/// Values copied by memo/DUP operations, in nodes: stops "billion laughs" pickles that double a
/// list with a few bytes per step.
const MAX_COPIED_NODES: u64 = 1 << 22;

fn children(v: &V) -> Box<dyn Iterator<Item = &V> + '_> {
    match v {
        V::Tuple(x) | V::List(x) => Box::new(x.iter()),
        V::Dict(x) => Box::new(x.iter().flat_map(|(k, v)| [k, v])),
        _ => Box::new(std::iter::empty()),
    }
}

fn depth(v: &V) -> usize {
    children(v).map(|c| 1 + depth(c)).max().unwrap_or(0)
}

fn nodes(v: &V) -> u64 {
    1 + children(v).map(nodes).sum::<u64>()
}

/// Checks a value about to be placed inside a container.
fn nest(v: V) -> Result<V, String> {
    if depth(&v) + 1 >= MAX_DEPTH {
        return Err(format!("pickle nests containers deeper than {MAX_DEPTH} levels"));
    }
    Ok(v)
}

/// Runs the pickle; returns the state dict as (name, tensor) in file order. `what` names the
/// source in errors. Non-tensor values in the top-level dict are skipped.
pub fn load_state_dict(data: &[u8], what: &str) -> Result<Vec<(String, TensorRef)>, String> {
    let top = run(data).map_err(|e| format!("{what}: {e}"))?;
    let items = match top {
        V::Dict(items) => items,
        other => return Err(format!("{what}: pickle is not a state dict (top-level {})", kind(&other))),
    };
    let mut out = Vec::new();
    for (k, v) in items {
        let name = match k {
            V::Str(s) => s,
            other => return Err(format!("{what}: state dict key is a {}, not a string", kind(&other))),
        };
        if let V::Tensor(t) = v {
            out.push((name, t));
        }
    }
    Ok(out)
}

fn kind(v: &V) -> &'static str {
    match v {
        V::None => "None",
        V::Bool(_) => "bool",
        V::Int(_) => "int",
        V::Float(_) => "float",
        V::Str(_) => "str",
        V::Bytes(_) => "bytes",
        V::Tuple(_) => "tuple",
        V::List(_) => "list",
        V::Dict(_) => "dict",
        V::Global(_) => "global",
        V::Storage { .. } => "storage",
        V::Tensor(_) => "tensor",
        V::Mark => "mark",
    }
}

fn resolve_global(module: &str, name: &str) -> Result<Global, String> {
    Ok(match (module, name) {
        ("torch._utils", "_rebuild_tensor_v2") => Global::RebuildTensorV2,
        ("torch._utils", "_rebuild_parameter") => Global::RebuildParameter,
        ("collections", "OrderedDict") => Global::OrderedDict,
        ("torch", "HalfStorage") => Global::Storage(DType::F16),
        ("torch", "BFloat16Storage") => Global::Storage(DType::BF16),
        ("torch", "FloatStorage") => Global::Storage(DType::F32),
        _ => {
            return Err(format!(
                "refusing to load global '{module}.{name}': not one of the classes a tensor state dict \
                 uses (a pickle naming it could run arbitrary code)"
            ))
        }
    })
}

struct Reader<'a> {
    data: &'a [u8],
    pos: usize,
}

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8], String> {
        let end =
            self.pos.checked_add(n).filter(|&e| e <= self.data.len()).ok_or_else(|| {
                format!("pickle truncated: need {n} bytes at offset {} of {}", self.pos, self.data.len())
            })?;
        let s = &self.data[self.pos..end];
        self.pos = end;
        Ok(s)
    }
    fn u8(&mut self) -> Result<u8, String> {
        Ok(self.take(1)?[0])
    }
    fn u16(&mut self) -> Result<u16, String> {
        Ok(u16::from_le_bytes(self.take(2)?.try_into().unwrap()))
    }
    fn u32(&mut self) -> Result<u32, String> {
        Ok(u32::from_le_bytes(self.take(4)?.try_into().unwrap()))
    }
    fn u64(&mut self) -> Result<u64, String> {
        Ok(u64::from_le_bytes(self.take(8)?.try_into().unwrap()))
    }
    fn line(&mut self) -> Result<&'a str, String> {
        let rest = &self.data[self.pos..];
        let n = rest.iter().position(|&b| b == b'\n').ok_or("pickle truncated: unterminated GLOBAL line")?;
        let s = std::str::from_utf8(&rest[..n]).map_err(|_| "GLOBAL name is not UTF-8".to_string())?;
        self.pos += n + 1;
        Ok(s)
    }
    fn utf8(&mut self, n: usize) -> Result<String, String> {
        let b = self.take(n)?;
        String::from_utf8(b.to_vec()).map_err(|_| format!("string at offset {} is not UTF-8", self.pos - n))
    }
}

fn pop(stack: &mut Vec<V>) -> Result<V, String> {
    match stack.pop() {
        Some(V::Mark) | None => Err("pickle stack underflow".into()),
        Some(v) => Ok(v),
    }
}

/// Pops everything above the topmost MARK (and the mark).
fn pop_mark(stack: &mut Vec<V>) -> Result<Vec<V>, String> {
    let m = stack.iter().rposition(|v| *v == V::Mark).ok_or("pickle: no MARK on the stack")?;
    let items = stack.split_off(m + 1);
    stack.pop();
    Ok(items)
}

fn to_u64(v: &V, what: &str) -> Result<u64, String> {
    match v {
        V::Int(i) if *i >= 0 => Ok(*i as u64),
        other => Err(format!("{what}: expected a non-negative int, got {other:?}")),
    }
}

fn int_tuple(v: &V, what: &str) -> Result<Vec<u64>, String> {
    match v {
        V::Tuple(items) => items.iter().map(|x| to_u64(x, what)).collect(),
        other => Err(format!("{what}: expected a tuple of ints, got {}", kind(other))),
    }
}

/// Applies an allowed callable to its argument tuple.
fn reduce(f: Global, args: Vec<V>) -> Result<V, String> {
    match f {
        Global::OrderedDict => Ok(V::Dict(Vec::new())),
        Global::RebuildParameter => match args.into_iter().next() {
            Some(t @ V::Tensor(_)) => Ok(t),
            _ => Err("_rebuild_parameter: first argument is not a tensor".into()),
        },
        Global::RebuildTensorV2 => {
            // (storage, storage_offset, size, stride, requires_grad, backward_hooks[, metadata])
            if args.len() < 4 {
                return Err(format!("_rebuild_tensor_v2: {} arguments, expected at least 4", args.len()));
            }
            let (dtype, key, numel) = match &args[0] {
                V::Storage { dtype, key, numel } => (*dtype, key.clone(), *numel),
                other => return Err(format!("_rebuild_tensor_v2: first argument is a {}, not a storage", kind(other))),
            };
            let offset = to_u64(&args[1], "_rebuild_tensor_v2 storage_offset")?;
            let shape = int_tuple(&args[2], "_rebuild_tensor_v2 size")?;
            let stride = int_tuple(&args[3], "_rebuild_tensor_v2 stride")?;
            if shape.len() != stride.len() {
                return Err(format!("_rebuild_tensor_v2: size {shape:?} and stride {stride:?} differ in rank"));
            }
            Ok(V::Tensor(TensorRef { storage_key: key, dtype, storage_numel: numel, offset, shape, stride }))
        }
        Global::Storage(_) => Err("a storage class cannot be called".into()),
    }
}

/// `BINPERSID` on torch's `('storage', StorageClass, key, location, numel)`.
fn persistent_load(pid: V) -> Result<V, String> {
    let items = match pid {
        V::Tuple(items) => items,
        other => return Err(format!("persistent id is a {}, expected a tuple", kind(&other))),
    };
    match items.as_slice() {
        [V::Str(tag), V::Global(Global::Storage(dtype)), V::Str(key), _location, numel] if tag == "storage" => {
            Ok(V::Storage { dtype: *dtype, key: key.clone(), numel: to_u64(numel, "storage numel")? })
        }
        _ => Err(format!("unsupported persistent id {items:?} (expected a torch storage)")),
    }
}

fn run(data: &[u8]) -> Result<V, String> {
    let mut r = Reader { data, pos: 0 };
    let mut stack: Vec<V> = Vec::new();
    let mut memo: HashMap<u32, V> = HashMap::new();
    let mut copied = 0u64;
    let mut copy = |v: &V| -> Result<V, String> {
        copied += nodes(v);
        if copied > MAX_COPIED_NODES {
            return Err(format!(
                "pickle copies more than {MAX_COPIED_NODES} values through its memo (refusing a memory bomb)"
            ));
        }
        Ok(v.clone())
    };
    loop {
        let at = r.pos;
        let op = r.u8()?;
        match op {
            0x80 => {
                let proto = r.u8()?; // PROTO
                if proto > 5 {
                    return Err(format!("unsupported pickle protocol {proto}"));
                }
            }
            0x95 => {
                r.u64()?; // FRAME: length hint only
            }
            b'c' => {
                // GLOBAL "module\nname\n"
                let module = r.line()?.to_string();
                let name = r.line()?;
                stack.push(V::Global(resolve_global(&module, name)?));
            }
            0x93 => {
                // STACK_GLOBAL
                let name = pop(&mut stack)?;
                let module = pop(&mut stack)?;
                match (module, name) {
                    (V::Str(m), V::Str(n)) => stack.push(V::Global(resolve_global(&m, &n)?)),
                    _ => return Err("STACK_GLOBAL operands are not strings".into()),
                }
            }
            b'q' => {
                let i = r.u8()? as u32;
                memo.insert(i, copy(stack.last().ok_or("BINPUT on empty stack")?)?);
            }
            b'r' => {
                let i = r.u32()?;
                memo.insert(i, copy(stack.last().ok_or("LONG_BINPUT on empty stack")?)?);
            }
            0x94 => {
                let i = memo.len() as u32; // MEMOIZE
                memo.insert(i, copy(stack.last().ok_or("MEMOIZE on empty stack")?)?);
            }
            b'h' | b'j' => {
                let i = if op == b'h' { r.u8()? as u32 } else { r.u32()? };
                let v = memo.get(&i).ok_or_else(|| format!("memo key {i} used before being set"))?;
                let v = copy(v)?;
                stack.push(v);
            }
            b'(' => stack.push(V::Mark),
            b'}' => stack.push(V::Dict(Vec::new())),
            b')' => stack.push(V::Tuple(Vec::new())),
            b']' => stack.push(V::List(Vec::new())),
            b'N' => stack.push(V::None),
            0x88 => stack.push(V::Bool(true)),
            0x89 => stack.push(V::Bool(false)),
            b'J' => stack.push(V::Int(r.u32()? as i32 as i64)),
            b'K' => stack.push(V::Int(r.u8()? as i64)),
            b'M' => stack.push(V::Int(r.u16()? as i64)),
            0x8a => {
                // LONG1: little-endian two's complement of n ≤ 8 bytes (longer would not fit i64)
                let n = r.u8()? as usize;
                let b = r.take(n)?;
                if n > 8 {
                    return Err(format!("LONG1 of {n} bytes does not fit 64 bits"));
                }
                let mut buf = [if b.last().is_some_and(|&x| x & 0x80 != 0) { 0xff } else { 0 }; 8];
                buf[..n].copy_from_slice(b);
                stack.push(V::Int(i64::from_le_bytes(buf)));
            }
            b'G' => stack.push(V::Float(f64::from_be_bytes(r.take(8)?.try_into().unwrap()))),
            b'X' => {
                let n = r.u32()? as usize;
                stack.push(V::Str(r.utf8(n)?));
            }
            0x8c => {
                let n = r.u8()? as usize;
                stack.push(V::Str(r.utf8(n)?));
            }
            0x8d => {
                let n = usize::try_from(r.u64()?).map_err(|_| "BINUNICODE8 length overflows")?;
                stack.push(V::Str(r.utf8(n)?));
            }
            b'C' => {
                let n = r.u8()? as usize;
                stack.push(V::Bytes(r.take(n)?.to_vec()));
            }
            b'B' => {
                let n = r.u32()? as usize;
                stack.push(V::Bytes(r.take(n)?.to_vec()));
            }
            b't' => {
                let items = pop_mark(&mut stack)?.into_iter().map(nest).collect::<Result<_, _>>()?;
                stack.push(V::Tuple(items));
            }
            0x85..=0x87 => {
                let n = (op - 0x84) as usize;
                if stack.len() < n || stack[stack.len() - n..].contains(&V::Mark) {
                    return Err(format!("TUPLE{n}: stack underflow"));
                }
                let items = stack.split_off(stack.len() - n).into_iter().map(nest).collect::<Result<_, _>>()?;
                stack.push(V::Tuple(items));
            }
            b's' => {
                let v = nest(pop(&mut stack)?)?;
                let k = nest(pop(&mut stack)?)?;
                match stack.last_mut() {
                    Some(V::Dict(d)) => d.push((k, v)),
                    _ => return Err("SETITEM target is not a dict".into()),
                }
            }
            b'u' => {
                let items: Vec<V> = pop_mark(&mut stack)?.into_iter().map(nest).collect::<Result<_, _>>()?;
                if !items.len().is_multiple_of(2) {
                    return Err("SETITEMS with an odd number of items".into());
                }
                let mut it = items.into_iter();
                match stack.last_mut() {
                    Some(V::Dict(d)) => {
                        while let (Some(k), Some(v)) = (it.next(), it.next()) {
                            d.push((k, v));
                        }
                    }
                    _ => return Err("SETITEMS target is not a dict".into()),
                }
            }
            b'a' => {
                let v = nest(pop(&mut stack)?)?;
                match stack.last_mut() {
                    Some(V::List(l)) => l.push(v),
                    _ => return Err("APPEND target is not a list".into()),
                }
            }
            b'e' => {
                let items: Vec<V> = pop_mark(&mut stack)?.into_iter().map(nest).collect::<Result<_, _>>()?;
                match stack.last_mut() {
                    Some(V::List(l)) => l.extend(items),
                    _ => return Err("APPENDS target is not a list".into()),
                }
            }
            b'Q' => {
                let pid = pop(&mut stack)?;
                stack.push(persistent_load(pid)?);
            }
            b'R' => {
                let args = pop(&mut stack)?;
                let f = pop(&mut stack)?;
                let args = match args {
                    V::Tuple(a) => a,
                    other => return Err(format!("REDUCE arguments are a {}, not a tuple", kind(&other))),
                };
                match f {
                    V::Global(g) => stack.push(reduce(g, args)?),
                    other => return Err(format!("REDUCE on a {}, not an allowed callable", kind(&other))),
                }
            }
            b'b' => {
                // BUILD: the state of an OrderedDict is its attribute dict (e.g. `_metadata`), which
                // a converter does not need; tensors carry no state we use.
                let _state = pop(&mut stack)?;
                match stack.last() {
                    Some(V::Dict(_)) | Some(V::Tensor(_)) => {}
                    Some(other) => return Err(format!("BUILD on a {}", kind(other))),
                    None => return Err("BUILD on empty stack".into()),
                }
            }
            b'0' => {
                stack.pop().ok_or("POP on empty stack")?;
            }
            b'1' => {
                pop_mark(&mut stack)?;
            }
            b'2' => {
                let v = copy(stack.last().ok_or("DUP on empty stack")?)?;
                stack.push(v);
            }
            b'.' => {
                let v = pop(&mut stack)?;
                return Ok(v);
            }
            _ => return Err(format!("unsupported pickle opcode 0x{op:02x} at offset {at}")),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn s(x: &str) -> Vec<u8> {
        let mut v = vec![b'X'];
        v.extend((x.len() as u32).to_le_bytes());
        v.extend(x.as_bytes());
        v
    }

    #[test]
    fn refuses_os_system() {
        let mut p = vec![0x80, 2];
        p.extend(b"cos\nsystem\n");
        p.extend(s("echo hi"));
        p.extend([0x85, b'R', b'.']);
        let e = load_state_dict(&p, "x.pkl").unwrap_err();
        assert!(e.contains("os.system"), "{e}");
    }

    #[test]
    fn refuses_builtins_eval_via_stack_global() {
        let mut p = vec![0x80, 4];
        p.extend([0x8c, 8]);
        p.extend(b"builtins");
        p.extend([0x8c, 4]);
        p.extend(b"eval");
        p.push(0x93);
        let e = load_state_dict(&p, "x.pkl").unwrap_err();
        assert!(e.contains("builtins.eval"), "{e}");
    }

    #[test]
    fn memory_bombs_and_deep_nesting_are_refused() {
        // [] then 64 × (DUP, APPEND): each step doubles the list's size.
        let mut p = vec![0x80, 2, b']'];
        for _ in 0..64 {
            p.extend([b'2', b'a']);
        }
        p.push(b'.');
        let e = load_state_dict(&p, "x").unwrap_err();
        assert!(e.contains("memory bomb"), "{e}");
        // 100000 nested 1-tuples (would overflow the stack when dropped if accepted).
        let mut p = vec![0x80, 2, b'N'];
        p.extend(std::iter::repeat_n(0x85, 100_000));
        p.push(b'.');
        let e = load_state_dict(&p, "x").unwrap_err();
        assert!(e.contains("deeper than"), "{e}");
    }

    #[test]
    fn truncated_and_garbage_inputs_error() {
        assert!(load_state_dict(&[0x80, 2, b'X', 0xff, 0xff, 0, 0], "x").unwrap_err().contains("truncated"));
        assert!(load_state_dict(&[0x80, 2, b'}'], "x").unwrap_err().contains("truncated"));
        assert!(load_state_dict(&[0x80, 2, b'u'], "x").is_err());
        assert!(load_state_dict(&[0x80, 2, b'h', 3], "x").unwrap_err().contains("memo"));
        assert!(load_state_dict(b".", "x").unwrap_err().contains("underflow"));
        assert!(load_state_dict(&[0x80, 2, 0xfe], "x").unwrap_err().contains("opcode 0xfe"));
    }
}
