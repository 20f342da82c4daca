#!/usr/bin/env python3
"""Fails if the modules of src/ import each other in a circle.

Reads every `crate::…`, `super::…` and `self::…` path in src/**/*.rs
(outside `#[cfg(test)] mod tests` and `tests.rs` files, where a test may
use anything),
resolves it to the longest module path that exists, and looks for cycles
at two depths: between top-level modules (`api`, `store`, `domain`, …)
and between their direct submodules (`domain::chain`, `store::handle`, …).
A parent module and its own submodules are one unit at the first depth and
are not compared with each other at the second (`mod.rs` re-exports).

    python3 .ci/module_cycles.py          # exit 1 and the cycles, if any
"""
import os
import re
import sys

ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "src")


def module_of(path):
    rel = os.path.relpath(path, ROOT)[:-3].split(os.sep)
    if rel[-1] == "mod":
        rel = rel[:-1]
    if rel in (["lib"], ["main"]):
        return ()
    return tuple(rel)


def sources():
    for folder, _, files in os.walk(ROOT):
        for name in files:
            if name.endswith(".rs"):
                path = os.path.join(folder, name)
                yield module_of(path), path, name == "mod.rs"


def code(path):
    text = open(path, encoding="utf-8").read()
    cut = text.find("#[cfg(test)]\nmod tests")
    if cut >= 0:
        text = text[:cut]
    return re.sub(r"//[^\n]*", "", text)


def paths_in(text):
    """Every path starting crate/super/self, with `use a::{b, c::d}` expanded."""
    out = []
    for match in re.finditer(r"\b((?:crate|super|self)(?:::\w+)*)::\{([^;]*?)\}", text, re.S):
        head = match.group(1)
        for item in re.split(r",", match.group(2)):
            item = item.strip().split(" as ")[0].strip("{} \n")
            if item:
                out.append(head + "::" + item)
    for match in re.finditer(r"\b((?:crate|super|self)(?:::\w+)+)", text):
        out.append(match.group(1))
    return out


def resolve(module, is_mod_rs, path, known):
    parts = path.split("::")
    base = list(module)
    if parts[0] == "crate":
        base, parts = [], parts[1:]
    else:
        # In a mod.rs (or lib.rs) `self` is the module itself; elsewhere too.
        while parts and parts[0] in ("super", "self"):
            if parts[0] == "super":
                base = base[:-1]
            parts = parts[1:]
    full = base + [p for p in parts if p not in ("self", "*")]
    for n in range(len(full), 0, -1):
        if tuple(full[:n]) in known:
            return tuple(full[:n])
    return None


def main():
    modules = {m: (p, is_mod) for m, p, is_mod in sources() if m[-1:] != ("tests",)}
    known = set(modules)
    edges = {}
    for module, (path, is_mod) in modules.items():
        for target in (resolve(module, is_mod, p, known) for p in paths_in(code(path))):
            if target is not None and target != module:
                edges.setdefault(module, set()).add(target)
    found = []
    for depth in (1, 2):
        graph = {}
        for a, targets in edges.items():
            for b in targets:
                ka, kb = a[:depth], b[:depth]
                if len(ka) < depth or len(kb) < depth or ka == kb:
                    continue
                if depth == 2 and ka[0] != kb[0]:
                    continue  # across top-level modules: depth 1 covers it
                graph.setdefault(ka, set()).add(kb)
        found += [(depth, c) for c in cycles(graph)]
    for depth, cycle in found:
        names = ["::".join(m) for m in cycle]
        print(f"module cycle (depth {depth}): " + " -> ".join(names + names[:1]))
    if found:
        sys.exit(1)
    print(f"no module cycles among {len(modules)} modules")


def cycles(graph):
    """Strongly connected components of more than one node (Tarjan)."""
    index, low, stack, on, out, counter = {}, {}, [], set(), [], [0]

    def visit(v):
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on.add(v)
        for w in sorted(graph.get(v, ())):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                out.append(sorted(component))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return out


if __name__ == "__main__":
    main()
