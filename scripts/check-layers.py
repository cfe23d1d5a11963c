#!/usr/bin/env python3
"""The module's source is a one-way stack: no import circle among the files of src/,
no `unsafe` outside src/api/, and no file over 400 lines (src/ and bench/src/).

An edge A -> B is a path in A that names B: `crate::b::...` or `super::...`,
resolved to the deepest file that exists. A parent's `mod child;` and its own uses
of its children are how it composes them, not imports, so only the other way counts
(a child may use its parent). Run by `make test`."""
import os
import re
import sys

ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..")
SRC = os.path.join(ROOT, "src")
MAX_LINES = 400
# The top-level modules from the bottom up (lib.rs's map of the crate): each may use
# only those before it; lib.rs may use them all.
LAYERS = ["error", "command_info", "api", "config", "store", "commands", "info"]


def module_files():
    """{module path tuple: file}; () is the crate root (lib.rs)."""
    files = {}
    for dirpath, _, names in os.walk(SRC):
        for name in names:
            if not name.endswith(".rs"):
                continue
            rel = os.path.relpath(os.path.join(dirpath, name), SRC)
            parts = rel[:-3].split(os.sep)
            if parts[-1] in ("mod", "lib"):
                parts = parts[:-1]
            files[tuple(parts)] = os.path.join(dirpath, name)
    return files


def resolve(path, files):
    """The deepest module that `path` (a tuple of names) reaches."""
    for n in range(len(path), 0, -1):
        if path[:n] in files:
            return path[:n]
    return ()


def strip_comments(text):
    text = re.sub(r"/\*.*?\*/", "", text, flags=re.S)
    return "\n".join(line.split("//")[0] if not line.lstrip().startswith("//") else "" for line in text.splitlines())


def edges(module, text, files):
    found = set()
    code = strip_comments(text)
    # `crate::a::b`, and the names inside `crate::{a, b::c}` or `use crate::a::{b, c}`.
    for m in re.finditer(r"\bcrate::((?:\w+::)*)(\{[^}]*\}|\w+)", code):
        prefix = tuple(p for p in m.group(1).split("::") if p)
        tails = [m.group(2)] if not m.group(2).startswith("{") else re.findall(r"\w+(?:::\w+)*", m.group(2))
        for tail in tails:
            found.add(resolve(prefix + tuple(tail.split("::")), files))
    for m in re.finditer(r"\b((?:super::)+)((?:\w+::)*)(\{[^}]*\}|\w+)", code):
        base = module[: len(module) - m.group(1).count("super::")]
        prefix = base + tuple(p for p in m.group(2).split("::") if p)
        tails = [m.group(3)] if not m.group(3).startswith("{") else re.findall(r"\w+(?:::\w+)*", m.group(3))
        for tail in tails:
            found.add(resolve(prefix + tuple(tail.split("::")), files))
    # A module composing its own descendants is not an import; nor is naming itself.
    return {t for t in found if t != module and t[: len(module)] != module}


def cycles(graph):
    """Every elementary cycle's members, found by a depth-first search."""
    found, state, stack = [], {}, []

    def visit(node):
        state[node] = "open"
        stack.append(node)
        for nxt in sorted(graph.get(node, ())):
            if state.get(nxt) == "open":
                found.append(stack[stack.index(nxt):] + [nxt])
            elif nxt not in state:
                visit(nxt)
        stack.pop()
        state[node] = "done"

    for node in sorted(graph):
        if node not in state:
            visit(node)
    return found


def name(module):
    return "crate::" + "::".join(module) if module else "crate (lib.rs)"


def main():
    files = module_files()
    graph = {m: edges(m, open(f).read(), files) for m, f in files.items()}
    problems = []
    for cycle in cycles(graph):
        problems.append("import circle: " + " -> ".join(name(m) for m in cycle))
    for module, targets in sorted(graph.items()):
        for target in sorted(targets):
            a, b = module[:1], target[:1]
            if a and a != b and (a[0] not in LAYERS or not b or b[0] not in LAYERS or LAYERS.index(b[0]) > LAYERS.index(a[0])):
                problems.append(f"{name(module)} uses {name(target)}, a layer above it (or one lib.rs does not list)")
    for module, path in sorted(files.items()):
        code = strip_comments(open(path).read())
        if module[:1] != ("api",) and re.search(r"\bunsafe\b", code):
            problems.append(f"unsafe outside src/api/: {os.path.relpath(path, ROOT)}")
    for top in ("src", os.path.join("bench", "src")):
        for dirpath, _, names in os.walk(os.path.join(ROOT, top)):
            for n in names:
                path = os.path.join(dirpath, n)
                if n.endswith(".rs") and sum(1 for _ in open(path)) > MAX_LINES:
                    problems.append(f"over {MAX_LINES} lines: {os.path.relpath(path, ROOT)}")
    for p in problems:
        print(f"check-layers: {p}", file=sys.stderr)
    if problems:
        sys.exit(1)
    print(f"check-layers: {len(files)} files, no import circle, each layer uses only those below it ({' < '.join(LAYERS)} < lib.rs)")

if __name__ == "__main__":
    main()
