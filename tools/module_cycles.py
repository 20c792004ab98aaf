#!/usr/bin/env python3
"""Import cycles between the modules of a Rust crate; exits 1 if there is one.

    python3 tools/module_cycles.py [crates/llama-core/src]   (default: every crates/*/src)

Each file is a module (`lib.rs` the crate root, `a/mod.rs` and `a.rs` module `a`, `a/b.rs` module
`a::b`; inline `mod x { … }` blocks are modules too). Every `crate::…`, `super::…`, `self::…` path and
every `use` of a child module (in `use` trees and in code, comments and strings removed) is an edge
from the module it is written in to the longest module prefix of the path (an item's module). A
module's uses of its own descendants are not edges: it declares them, and a parent re-exporting
what its children define is the usual Rust layout. Everything else counts, including a child's use
of its parent's items. A cycle is a strongly connected component of more than one module; each is
printed with one path around it and the lines that make its edges.
"""

import re
import sys
from pathlib import Path


def strip(src: str) -> str:
    """Source with comments, string and char literals blanked (newlines kept for line numbers)."""
    out, i, n = [], 0, len(src)
    while i < n:
        c = src[i]
        if src.startswith("//", i):
            j = src.find("\n", i)
            j = n if j < 0 else j
            out.append(" " * (j - i))
            i = j
        elif src.startswith("/*", i):
            depth, j = 1, i + 2
            while j < n and depth:
                if src.startswith("/*", j):
                    depth, j = depth + 1, j + 2
                elif src.startswith("*/", j):
                    depth, j = depth - 1, j + 2
                else:
                    j += 1
            out.append(re.sub(r"[^\n]", " ", src[i:j]))
            i = j
        elif c == "r" and re.match(r'r#*"', src[i:]) and (i == 0 or not (src[i - 1].isalnum() or src[i - 1] == "_")):
            hashes = re.match(r"r(#*)\"", src[i:]).group(1)
            end = src.find('"' + hashes, i + 2 + len(hashes))
            j = n if end < 0 else end + 1 + len(hashes)
            out.append(re.sub(r"[^\n]", " ", src[i:j]))
            i = j
        elif c == '"':
            j = i + 1
            while j < n and src[j] != '"':
                j += 2 if src[j] == "\\" else 1
            out.append(re.sub(r"[^\n]", " ", src[i : j + 1]))
            i = j + 1
        elif c == "'" and re.match(r"'(\\.|[^\\'])'", src[i:]):
            m = re.match(r"'(\\.[^']*|[^\\'])'", src[i:])
            out.append(" " * len(m.group(0)))
            i += len(m.group(0))
        else:
            out.append(c)
            i += 1
    return "".join(out)


def module_of(src_dir: Path, f: Path) -> tuple:
    rel = f.relative_to(src_dir).with_suffix("")
    parts = list(rel.parts)
    if parts in (["lib"], ["main"]):
        return ()
    if parts[-1] == "mod":
        parts = parts[:-1]
    return tuple(parts)


def expand_use(tree: str) -> list:
    """`a::{b, c::{d, e}}` → ['a::b', 'a::c::d', 'a::c::e'] (`self` inside braces = the prefix)."""
    tree = re.sub(r"\s+", "", tree)
    depth, start, parts = 0, 0, []
    brace = tree.find("{")
    if brace < 0:
        return [re.sub(r"(::\*|as\w+)$", "", tree.split(" as ")[0])]
    prefix, body = tree[:brace], tree[brace + 1 : tree.rfind("}")]
    for i, ch in enumerate(body):
        if ch == "{":
            depth += 1
        elif ch == "}":
            depth -= 1
        elif ch == "," and depth == 0:
            parts.append(body[start:i])
            start = i + 1
    parts.append(body[start:])
    out = []
    for p in filter(None, parts):
        if p == "self":
            out.append(prefix.rstrip(":"))
        else:
            out.extend(expand_use(prefix + p))
    return out


def analyse(src_dirs: list) -> int:
    files = {}
    for d in src_dirs:
        for f in sorted(d.rglob("*.rs")):
            files[(d, f)] = module_of(d, f)
    # per crate: module set (file modules + inline ones) and edges
    status = 0
    for d in src_dirs:
        mods = {m for (dd, _), m in files.items() if dd == d}
        texts = {}
        for (dd, f), m in files.items():
            if dd != d:
                continue
            texts[f] = strip(f.read_text())
            for im in re.finditer(r"\bmod\s+(\w+)\s*\{", texts[f]):
                mods.add(m + (im.group(1),))  # approximate: inline modules at file level
        edges = {}  # (src, dst) -> [(file, line)]
        for (dd, f), m in files.items():
            if dd != d:
                continue
            file_edges(f, m, texts[f], mods, edges)
        status |= report(d, mods, edges)
    return status


def file_edges(f: Path, m: tuple, text: str, mods: set, edges: dict) -> None:
    """Adds the edges written in file `f` (module `m`, comment-free source `text`) to `edges`."""
    # inline module stack by brace depth
    stack, depth, spans = [], 0, []
    for tok in re.finditer(r"\bmod\s+(\w+)\s*\{|[{}]", text):
        if tok.group(0) == "{":
            depth += 1
        elif tok.group(0) == "}":
            depth -= 1
            while stack and stack[-1][1] > depth:
                name, _, s = stack.pop()
                spans.append((s, tok.start(), name))
        else:
            depth += 1
            stack.append((tok.group(1), depth, tok.start()))

    def module_at(pos):
        inner = [(s, e, name) for s, e, name in spans if s <= pos < e]
        inner.sort()
        return m + tuple(name for _, _, name in inner)

    def resolve(path: str, here: tuple):
        segs = path.replace("$crate", "crate").split("::")
        if segs[0] == "crate":
            base, segs = (), segs[1:]
        elif segs[0] in ("super", "self"):
            base = here
            while segs and segs[0] in ("super", "self"):
                if segs[0] == "super":
                    base = base[:-1]
                segs = segs[1:]
        elif here + (segs[0],) in mods:
            base = here
        else:
            return None  # external crate, std, or a local item
        best = base
        for i in range(1, len(segs) + 1):
            if base + tuple(segs[:i]) in mods:
                best = base + tuple(segs[:i])
        return best

    def add(path: str, pos: int):
        here = module_at(pos)
        dst = resolve(path, here)
        if dst is None or dst == here or dst[: len(here)] == here:
            return  # itself, or one of its descendants
        line = text.count("\n", 0, pos) + 1
        edges.setdefault((here, dst), []).append((f, line))

    for u in re.finditer(r"\buse\s+([^;]+);", text):
        for p in expand_use(u.group(1)):
            add(p, u.start())
    for p in re.finditer(r"(?<![\w:$])(\$?crate|super|self)(::\w+)+", text):
        if not re.match(r"\buse\b", text[text.rfind("\n", 0, p.start()) + 1 : p.start()].strip()):
            add(p.group(0), p.start())


def report(d: Path, mods: set, edges: dict) -> int:
    graph = {m: set() for m in mods}
    for s, t in edges:
        graph.setdefault(s, set()).add(t)
        graph.setdefault(t, set())
    # Tarjan's strongly connected components
    index, low, on, stack, sccs, counter = {}, {}, set(), [], [], [0]
    sys.setrecursionlimit(10000)

    def visit(v):
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on.add(v)
        for w in sorted(graph[v]):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on.discard(w)
                comp.append(w)
                if w == v:
                    break
            sccs.append(comp)

    for v in sorted(graph):
        if v not in index:
            visit(v)

    def name(m):
        return "::".join(("crate",) + m)

    cycles = [c for c in sccs if len(c) > 1]
    n_edges = len(edges)
    if not cycles:
        print(f"{d}: {len(graph)} modules, {n_edges} edges, no import cycles")
        return 0
    for comp in cycles:
        members = set(comp)
        print(f"{d}: import cycle among {', '.join(sorted(name(m) for m in comp))}")
        for (s, t), where in sorted(edges.items()):
            if s in members and t in members:
                f, line = where[0]
                print(f"  {name(s)} -> {name(t)}  ({f}:{line})")
    return 1


def main():
    args = [Path(a) for a in sys.argv[1:]]
    if not args:
        root = Path(__file__).resolve().parent.parent
        args = sorted(p for p in (root / "crates").glob("*/src") if p.is_dir())
    sys.exit(analyse(args))


if __name__ == "__main__":
    main()
