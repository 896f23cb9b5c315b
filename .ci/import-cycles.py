#!/usr/bin/env python3
"""Import cycles between the modules of a Rust crate's source folder.

Usage: import-cycles.py SRC_DIR [SRC_DIR ...]; exits 1 when a cycle exists.

Why by hand: no maintained cargo tool reports cycles between the modules of
one crate. This reads the sources as text, which is enough for how Weir
writes paths (`crate::a::b`, `super::x`, `use a::{b, c}` in a module that
declares `a`).

The graph has one node per module file. `A -> B` when A names a path into B,
and a module points at each child it declares (it holds them: what they
import, it imports). A child naming its own ancestor is not an edge: in Rust a child is part of
its parent (`config/route.rs` adds methods to the parent's `Validator`). But
an ancestor's re-export (`pub use load::PluginError` in `plugin/mod.rs`)
resolves to the module that defines the item, so a child that reaches a
sibling through its parent still counts. Comments and `#[cfg(test)]`
modules are left out: tests may use anything.
"""
import os
import re
import sys

PATH = re.compile(r'\b((?:crate|super|self)(?:::\{?\s*[A-Za-z_][A-Za-z0-9_]*)+)')
GROUP = re.compile(r'\buse\s+((?:crate|super|self)(?:::[A-Za-z_][A-Za-z0-9_]*)*)::\{([^;]*)\};', re.S)
REEXPORT = re.compile(r'\bpub(?:\([a-z]+\))?\s+use\s+([A-Za-z_][A-Za-z0-9_]*)::(\{[^;]*\}|[A-Za-z_][A-Za-z0-9_]*)\s*;', re.S)


def modules(root):
    found = {}
    for d, _, files in os.walk(root):
        for f in files:
            if not f.endswith('.rs'):
                continue
            path = os.path.join(d, f)
            parts = os.path.relpath(path, root)[:-3].split(os.sep)
            if parts[-1] in ('mod', 'lib', 'main'):
                parts = parts[:-1]
            if 'tests' in parts:
                continue
            found[tuple(parts)] = path
    return found


def source(path):
    text = open(path).read()
    cut = re.search(r'#\[cfg\(test\)\]\s*mod \w+\s*[;{]', text)
    if cut:
        text = text[:cut.start()]
    text = re.sub(r'//[^\n]*', '', text)
    return re.sub(r'"(?:\\.|[^"\\])*"', '""', text)


def graph(root):
    mods = modules(root)
    srcs = {m: source(p) for m, p in mods.items()}
    facade = {m: os.path.basename(p) in ('mod.rs', 'lib.rs', 'main.rs') for m, p in mods.items()}
    # (module, name) -> child module it re-exports the name from
    reexports = {}
    for m, src in srcs.items():
        for child, names in REEXPORT.findall(src):
            if m + (child,) not in mods:
                continue
            for name in re.findall(r'[A-Za-z_][A-Za-z0-9_]*', names):
                reexports[(m, name)] = m + (child,)

    def target(base, rest):
        path = list(base)
        for seg in rest:
            if tuple(path + [seg]) in mods:
                path.append(seg)
            else:
                return reexports.get((tuple(path), seg), tuple(path))
        return tuple(path)

    def resolve(m, segs):
        if segs[0] == 'crate':
            return target((), segs[1:])
        if segs[0] == 'self':
            return target(m, segs[1:])
        base = list(m)
        while segs and segs[0] == 'super':
            base = base[:-1]
            segs = segs[1:]
        return target(tuple(base), segs)

    edges = {m: set() for m in mods}
    for m, src in srcs.items():
        refs = [p.replace('{', '').replace(' ', '').split('::') for p in PATH.findall(src)]
        for prefix, names in GROUP.findall(src):
            for name in re.findall(r'[A-Za-z_][A-Za-z0-9_]*(?:::[A-Za-z_][A-Za-z0-9_]*)*', names):
                refs.append(prefix.split('::') + name.split('::'))
        if facade[m]:
            # A module holds its children: what they import, it imports.
            for child in (c for c in mods if len(c) == len(m) + 1 and c[:len(m)] == m):
                refs.append(['self', child[-1]])
        for segs in refs:
            t = resolve(m, segs)
            # A module's own ancestors are not dependencies (see the doc).
            if t != m and m[:len(t)] != t:
                edges[m].add(t)
    return edges


def cycles(edges):
    index, low, stack, on, out = {}, {}, [], set(), []
    counter = [0]

    def visit(v):
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on.add(v)
        for w in edges[v]:
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
            if len(comp) > 1:
                out.append(comp)

    sys.setrecursionlimit(10000)
    for v in edges:
        if v not in index:
            visit(v)
    return out


def main():
    failed = False
    for root in sys.argv[1:]:
        edges = graph(root)
        name = lambda m: '::'.join(m) or 'crate'
        found = cycles(edges)
        for comp in found:
            failed = True
            members = set(comp)
            print(f'{root}: import cycle: ' + ', '.join(sorted(name(m) for m in comp)))
            for m in sorted(comp):
                print(f'    {name(m)} -> ' + ', '.join(sorted(name(t) for t in edges[m] if t in members)))
        if not found:
            print(f'{root}: no import cycle among {len(edges)} modules')
    sys.exit(1 if failed else 0)


if __name__ == '__main__':
    main()
