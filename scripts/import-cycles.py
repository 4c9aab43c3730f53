#!/usr/bin/env python3
"""Lists import circles between the files of each crate: a file imports another when
it names it in a `use crate::…`/`use super::…` path or a `crate::a::b` expression.
Exit 1 when a circle spans more than two files (ARCHITECTURE.md: "no import circle of
more than two files"). A parent module and the child files it declares are one unit
(`mod x;` is not an import).

    scripts/import-cycles.py [crates/...]
"""
import os
import re
import sys

USE = re.compile(r"\b(crate|super)((?:::[A-Za-z_][A-Za-z0-9_]*)+)")


def module_of(src, path):
    rel = os.path.relpath(path, src)[:-3].split(os.sep)
    if rel[-1] in ("mod", "lib", "main"):
        rel = rel[:-1]
    return tuple(rel)


def files(src):
    for d, _, fs in os.walk(src):
        for f in fs:
            if f.endswith(".rs"):
                yield os.path.join(d, f)


def strip_tests(text):
    # A `#[cfg(test)] mod tests { … }` block at the end of a file imports for its tests.
    i = text.find("#[cfg(test)]\nmod tests")
    return text if i < 0 else text[:i]


def graph(src):
    mods = {module_of(src, p): p for p in files(src)}
    edges = {m: set() for m in mods}
    for m, p in mods.items():
        if os.path.basename(p) in ("tests.rs",) or "/tests/" in p:
            continue
        text = strip_tests(open(p, encoding="utf-8").read())
        for root, path in USE.findall(text):
            parts = path.strip(":").split("::")
            base = () if root == "crate" else m[:-1] if not p.endswith(("mod.rs", "lib.rs")) else m
            if root == "super" and not p.endswith(("mod.rs", "lib.rs")):
                base = m[:-1]
            elif root == "super":
                base = m[:-1]
            # the longest prefix naming a file
            target = None
            for k in range(len(parts), 0, -1):
                cand = base + tuple(parts[:k])
                if cand in mods:
                    target = cand
                    break
            if target is None and base in mods:
                target = base
            if target is not None and target != m and not is_ancestor(target, m) and not is_ancestor(m, target):
                edges[m].add(target)
    return mods, edges


def is_ancestor(a, b):
    return len(a) < len(b) and b[: len(a)] == a


def sccs(edges):
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
            out.append(comp)

    sys.setrecursionlimit(10000)
    for v in edges:
        if v not in index:
            visit(v)
    return out


def main():
    roots = sys.argv[1:] or sorted(
        os.path.join("crates", c) for c in os.listdir("crates") if os.path.isdir(os.path.join("crates", c, "src"))
    )
    bad = 0
    for crate in roots:
        mods, edges = graph(os.path.join(crate, "src"))
        for comp in sccs(edges):
            if len(comp) > 2:
                bad += 1
                names = ", ".join(sorted("::".join(m) or "lib" for m in comp))
                print(f"{crate}: import circle of {len(comp)} files: {names}")
    if bad:
        sys.exit(1)
    print("no import circle of more than two files")


if __name__ == "__main__":
    main()
