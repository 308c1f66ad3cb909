#!/usr/bin/env python3
"""Import cycles between the modules of Rust crates.

    scripts/import-cycles.py crates/runner/src [crates/sparse/src ...]

Maps every file under each `src` directory to its module (`main.rs` or `lib.rs` is the crate,
`a.rs` and `a/mod.rs` are `a`, `a/b.rs` is `a::b`), reads the `crate::...` and `super::...`
paths of its code (`use` items with their braces expanded, and paths written out anywhere) and
resolves each to the longest module it names. A module that uses another is an edge; every
elementary cycle of that graph is printed, and the exit status is 1 if there is any.

Left out on purpose: test code (`#[cfg(test)] mod NAME { ... }` blocks, and files named
`tests.rs`), and a module's use of its own submodules (a folder's `mod.rs` declares and may
re-export its children; children using their parent is what counts). Relative paths
(`use child::x`, `self::x`) name a module's own items or submodules, so they are not read.

Limits: this reads text, not Rust. A path built by a macro, a `#[path]` attribute or a binary
under `src/bin/` is not seen, and an item that a parent re-exports (`pub use child::Item`)
counts as the parent's. Inline modules (`mod x86 { ... }`) belong to their file. The cycles are
enumerated one by one, which suits crates of tens of modules, not thousands.
"""

import re
import sys
from pathlib import Path

# Comments, literals and `pub(in path)` visibilities, replaced by a space before anything is
# read: they may hold `crate::` or braces without using anything. A lifetime (`'a`) is not a char
# literal: it has no closing quote.
NOISE = re.compile(
    r"""//[^\n]*|/\*.*?\*/|(?<!\w)b?r(\#*)".*?"\1|(?<!\w)b?"(?:\\.|[^"\\])*"|b?'(?:\\.|[^'\\])'"""
    r"""|\bpub\s*\(\s*in\s+[\w:]+\s*\)""",
    re.S,
)
TEST_MODULE = re.compile(r"#\[cfg\(test\)\]\s*(?:#\[[^\]]*\]\s*)*(?:pub(?:\([^)]*\))?\s+)?mod\s+\w+\s*\{")
INLINE_MODULE = re.compile(r"\bmod\s+\w+\s*\{")
USE = re.compile(r"\buse\s+([^;]+);")
PATH = re.compile(r"\b(?:crate|super)(?:\s*::\s*\w+)+")


def module_of(src, file):
    parts = list(file.relative_to(src).with_suffix("").parts)
    if parts[-1] == "mod" or parts in (["main"], ["lib"]):
        parts.pop()
    return tuple(parts)


def block_end(code, start):
    """The index just after the brace that closes the one before `start`."""
    depth = 1
    while depth:
        depth += {"{": 1, "}": -1}.get(code[start], 0)
        start += 1
    return start


def without_tests(code):
    while match := TEST_MODULE.search(code):
        code = code[: match.start()] + code[block_end(code, match.end()) :]
    return code


def expand(tree):
    """A use tree as paths: `a::{b, c::{d, self}}` -> `a::b`, `a::c::d`, `a::c`."""
    if "{" not in tree:
        return [re.sub(r"::(self|\*)$", "", tree)]
    head, body = tree.split("{", 1)
    parts, depth, start = [], 0, 0
    body = body[: body.rindex("}")]
    for i, c in enumerate(body + ","):
        depth += {"{": 1, "}": -1}.get(c, 0)
        if c == "," and depth == 0:
            if body[start:i]:
                parts.append(body[start:i])
            start = i + 1
    return [path for part in parts for path in expand(head + part)]


def paths(code):
    """(position, path) of every `crate::` or `super::` path in `code`."""
    found = []
    for use in USE.finditer(code):
        tree = re.sub(r"\s+", "", re.sub(r"\s+as\s+\w+", "", use.group(1)))
        found += [(use.start(), p) for p in expand(tree) if p.split("::")[0] in ("crate", "super")]
    rest = USE.sub(lambda m: " " * len(m.group(0)), code)
    found += [(m.start(), re.sub(r"\s+", "", m.group(0))) for m in PATH.finditer(rest)]
    return found


def graph(src):
    files = {module_of(src, f): f for f in sorted(src.rglob("*.rs")) if f.name != "tests.rs"}
    edges = {module: set() for module in files}
    for here, file in files.items():
        code = without_tests(NOISE.sub(" ", file.read_text()))
        inline = [(m.start(), block_end(code, m.end())) for m in INLINE_MODULE.finditer(code)]
        for at, path in paths(code):
            parts = path.split("::")
            # Inside an inline module, the first `super`s only climb back out of it.
            climb = sum(start < at < end for start, end in inline)
            base = here
            while parts[0] == "super":
                parts.pop(0)
                if climb:
                    climb -= 1
                else:
                    base = base[:-1]
            if parts[0] == "crate":
                base, parts = (), parts[1:]
            target = base + tuple(parts)
            while target and target not in files:
                target = target[:-1]
            if target[: len(here)] != here:  # itself and its own submodules are left out
                edges[here].add(target)
    return edges


def cycles(edges):
    """Every elementary cycle once, from its first module in sorted order."""
    found = []

    def walk(start, node, path):
        for after in sorted(edges[node]):
            if after == start:
                found.append(path + [start])
            elif after > start and after not in path:
                walk(start, after, path + [after])

    for start in sorted(edges):
        walk(start, start, [start])
    return found


def name(module):
    return "::".join(module) or "crate"


def main(dirs):
    status = 0
    for src in map(Path, dirs):
        edges = graph(src)
        found = cycles(edges)
        count = sum(map(len, edges.values()))
        print(f"{src}: {len(edges)} modules, {count} edges, {len(found)} import cycles")
        for cycle in found:
            print("  " + " -> ".join(map(name, cycle)))
        status |= bool(found)
    return status


if __name__ == "__main__":
    if len(sys.argv) < 2:
        sys.exit(__doc__)
    sys.exit(main(sys.argv[1:]))
