#!/usr/bin/env python3
"""Module rule: no module of a crate imports a module that imports it back, directly or
around a circle.

Run from anywhere: `python3 scripts/dev/module_cycles.py`. It reads every target of every
crate under `crates/` (the library, binaries, tests, benches, examples and build script),
builds each target's module graph and reports every strongly connected component of more
than one module (Tarjan's algorithm), so a circle of any length is found, not only two
modules that name each other. Exit status 1 with the circles and the references that close
them; 0 and one summary line otherwise.

A module is a file (`lib.rs`, `main.rs`, `mod.rs` or `name.rs`, found by following the
`mod name;` declarations from the target's root, `#[path]` included) or an inline
`mod name { ... }` block. The crate root (`lib.rs`, `main.rs`) is shown as `crate`.

An edge A -> B means that code of A names B, which is any of:

* a `use` path, `pub use` re-exports included, starting with `crate::`, `$crate::`,
  `super::`, `self::` or the name of a child module of A, or with a name that an earlier
  `use` of A made an alias of a module;
* such a path anywhere else in the code (`crate::startup::connect(..)`, `keys::run(..)`);
* such a path as an intra-doc link in a `///` or `//!` doc comment (`[`crate::startup`]`,
  `[text](super::Foo)`, `[name]: self::bar`): rustdoc makes it a link, so the reader of A
  is sent to B.

B is the deepest module the path walks through: `crate::http::auth::SignInLimits` names
`http::auth`, `use crate::http::{auth, error}` names `http::auth` and `http::error` (not
`http`), and `crate::Foo` names the crate root even when the root only re-exports `Foo`
from another module, as a reader must go through the root to find it.

Not edges: `mod name;` declarations (structure, not an import), paths of other crates,
plain `//` and `/* */` comments, string and character literals, `pub(in path)` visibility,
paths in a `macro_rules!` body other than `crate::` and `$crate::` ones (they name modules
of wherever the macro is used), and everything compiled only for tests (an item under
`#[cfg(test)]` or `#[cfg(all(test, ...))]`, such as `mod tests { use super::*; }`). Every
other `#[cfg]` is read as if enabled, so every feature's code counts.
"""

from __future__ import annotations

import re
import sys
from dataclasses import dataclass, field
from pathlib import Path

try:
    import tomllib
except ModuleNotFoundError:  # Python < 3.11: targets in Cargo's conventional places only
    tomllib = None

ROOT = Path(__file__).resolve().parents[2]

# Where the next comment, string or character literal may start.
SPECIAL = re.compile(r"/[/*]|\"|'|(?<!\w)b?r#*\"")
RAW_STRING_START = re.compile(r'b?r(#*)"')
CHAR_LITERAL = re.compile(r"'(?:\\(?:x[0-9a-fA-F]{2}|u\{[0-9a-fA-F_]*\}|.)|[^\\'\n])'")
CFG_ATTRIBUTE = re.compile(r"#\s*\[\s*cfg\s*\(")
ATTRIBUTE_START = re.compile(r"\s*#\s*!?\s*\[")
VISIBILITY_IN = re.compile(r"\bpub\s*\(\s*in\s+[^)]*\)")
USE_STATEMENT = re.compile(r"(?<![\w$])use\s+(?=[\w:${])")
USE_TOKEN = re.compile(r"::|[{},*]|\$?\w+")
MACRO_RULES = re.compile(r"(?<![\w$])macro_rules!\s*\w+\s*[{(\[]")
INLINE_MOD = re.compile(r"(?<![\w$])mod\s+(?:r#)?(\w+)\s*\{")
MOD_DECLARATION = re.compile(r"(?<![\w$])mod\s+(?:r#)?(\w+)\s*;")
PATH_ATTRIBUTE = re.compile(
    r'#\s*\[\s*path\s*=\s*"([^"]*)"\s*\]\s*'  # #[path = "file.rs"]
    r"(?:#\s*\[[^\]]*\]\s*)*"  # other attributes
    r"(?:pub(?:\s*\([^)]*\))?\s+)?$"  # visibility, then `mod name;`
)
CODE_PATH = re.compile(r"(?<![\w:$])(\$crate|[A-Za-z_]\w*)((?:::[A-Za-z_]\w*)+)")
DOC_PATH = re.compile(r"^(?:\$crate|[A-Za-z_]\w*)(?:::[A-Za-z_]\w*)*$")
DOC_LINKS = [
    re.compile(r"\]\(([^()\s]+(?:\(\))?)\)"),  # [text](target)
    re.compile(r"\]\[([^\[\]]+)\]"),  # [text][target]
    re.compile(r"^\s*\[[^\[\]]+\]:\s*(\S+)"),  # [name]: target
    re.compile(r"\[([^\[\]]+)\](?![(\[:])"),  # [target] or [`target`]
]
DISAMBIGUATOR = re.compile(r"^[a-z]+@")

Module = tuple  # a module's path inside its target; () is the crate root


def display(module: Module) -> str:
    return "::".join(module) if module else "crate"


def lex(source: str) -> tuple[str, list[tuple[int, str]]]:
    """The code with comments and the contents of literals blanked (same length, same
    lines), and the doc comments as (offset, text)."""
    code = list(source)
    docs: list[tuple[int, str]] = []

    def blank(start: int, end: int) -> None:
        for k in range(start, min(end, len(code))):
            if code[k] != "\n":
                code[k] = " "

    i = 0
    while (match := SPECIAL.search(source, i)) is not None:
        i = match.start()
        if source.startswith("//", i):
            end = source.find("\n", i)
            end = len(source) if end < 0 else end
            if source.startswith("//!", i) or (
                source.startswith("///", i) and not source.startswith("////", i)
            ):
                docs.append((i, source[i + 3 : end]))
            blank(i, end)
            i = end
        elif source.startswith("/*", i):
            depth, end = 1, i + 2
            while end < len(source) and depth:
                if source.startswith("/*", end):
                    depth, end = depth + 1, end + 2
                elif source.startswith("*/", end):
                    depth, end = depth - 1, end + 2
                else:
                    end += 1
            is_doc = source.startswith("/*!", i) or (
                source.startswith("/**", i)
                and not source.startswith("/***", i)
                and not source.startswith("/**/", i)
            )
            if is_doc:
                docs.append((i, source[i + 3 : end - 2]))
            blank(i, end)
            i = end
        elif source[i] == '"':
            end = i + 1
            while end < len(source) and source[end] != '"':
                end += 2 if source[end] == "\\" else 1
            blank(i + 1, end)
            i = end + 1
        elif source[i] == "'":
            char = CHAR_LITERAL.match(source, i)
            if char is None:  # a lifetime or a loop label
                i += 1
            else:
                blank(i + 1, char.end() - 1)
                i = char.end()
        else:  # a raw string: r"..", r#".."#, br".."
            start = RAW_STRING_START.match(source, i)
            assert start is not None
            close = '"' + start.group(1)
            end = source.find(close, start.end())
            end = len(source) if end < 0 else end
            blank(start.end(), end)
            i = end + len(close)
    return "".join(code), docs


def closing(code: str, start: int) -> int:
    """The index just past the bracket that closes the one at `start`."""
    pairs = {"(": ")", "[": "]", "{": "}"}
    stack = []
    for k in range(start, len(code)):
        if code[k] in pairs:
            stack.append(pairs[code[k]])
        elif stack and code[k] == stack[-1]:
            stack.pop()
            if not stack:
                return k + 1
    return len(code)


def is_test_only(predicate: str) -> bool:
    """Whether a `cfg(...)` predicate holds only in test builds: `test`, `all(test, ..)`."""
    predicate = predicate.strip()
    if predicate == "test":
        return True
    if re.fullmatch(r"all\s*\((.*)\)", predicate, re.S):
        inner = predicate[predicate.index("(") + 1 : -1]
        depth, part, parts = 0, "", []
        for char in inner:
            depth += char == "("
            depth -= char == ")"
            if char == "," and depth == 0:
                parts.append(part)
                part = ""
            else:
                part += char
        parts.append(part)
        return any(is_test_only(p) for p in parts)
    return False


def item_end(code: str, start: int) -> int:
    """The index just past the item that starts at `start` (after its attributes)."""
    while (attribute := ATTRIBUTE_START.match(code, start)) is not None:
        start = closing(code, attribute.end() - 1)
    k = start
    while k < len(code):
        if code[k] == ";":
            return k + 1
        if code[k] in "([":
            k = closing(code, k)
        elif code[k] == "{":
            k = closing(code, k)
            after = re.compile(r"\s*;").match(code, k)  # `use a::{b};`, `static S: T = T {..};`
            return after.end() if after else k
        else:
            k += 1
    return k


def strip_test_only(code: str) -> tuple[str, list[tuple[int, int]]]:
    """The code with every test-only item blanked, and the blanked ranges."""
    ranges = []
    for attribute in CFG_ATTRIBUTE.finditer(code):
        if any(a <= attribute.start() < b for a, b in ranges):
            continue
        end = closing(code, attribute.end() - 1)
        if is_test_only(code[attribute.end() : end - 1]):
            attribute_end = closing(code, code.index("[", attribute.start()))
            ranges.append((attribute.start(), item_end(code, attribute_end)))
    chars = list(code)
    for a, b in ranges:
        for k in range(a, b):
            if chars[k] != "\n":
                chars[k] = " "
    return "".join(chars), ranges


def expand_use(tree: str) -> list[tuple[list[str], str]]:
    """The paths of a use tree with the local name of each: `a::{b, c::d as e, self}` gives
    (a::b, b), (a::c::d, e), (a, a). Globs get the local name `*`."""
    tokens = USE_TOKEN.findall(tree)
    out: list[tuple[list[str], str]] = []

    def parse(pos: int, prefix: list[str]) -> int:
        segments = list(prefix)
        while pos < len(tokens):
            token = tokens[pos]
            if token == "::":
                if not segments:
                    segments.append("::")  # `::name`: another crate
                pos += 1
            elif token == "{":
                pos += 1
                while pos < len(tokens) and tokens[pos] != "}":
                    if tokens[pos] == ",":
                        pos += 1
                    else:
                        pos = parse(pos, segments)
                return pos + 1
            elif token == "*":
                out.append((segments, "*"))
                return pos + 1
            elif token in ",}":
                return pos
            else:
                segments.append(token)
                pos += 1
                if pos < len(tokens) and tokens[pos] == "as":
                    local = tokens[pos + 1] if pos + 1 < len(tokens) else token
                    pos += 2
                else:
                    local = token
                if pos >= len(tokens) or tokens[pos] != "::":
                    if segments[-1] == "self" and len(segments) > 1:
                        segments.pop()
                        local = segments[-1] if local == "self" else local
                    out.append((segments, local))
                    return pos
        return pos

    parse(0, [])
    return out


@dataclass
class Span:
    """Where a module's own code lies in a file (an inline module is cut out of its file)."""

    module: Module
    start: int
    end: int
    child_dir: Path  # where its `mod name;` files are looked up


@dataclass
class SourceFile:
    path: Path
    code: str
    docs: list[tuple[int, str]]
    spans: list[Span] = field(default_factory=list)
    code_without_uses: str = ""
    macro_bodies: list[tuple[int, int]] = field(default_factory=list)

    def owner(self, offset: int) -> Module:
        inside = [s for s in self.spans if s.start <= offset < s.end]
        return min(inside, key=lambda s: s.end - s.start).module

    def line(self, offset: int) -> int:
        return self.code.count("\n", 0, offset) + 1

    def relative_to_call_site(self, offset: int, segments: list[str]) -> bool:
        """Whether a path is inside a `macro_rules!` body and not `crate::` or `$crate::`:
        such a path names a module of wherever the macro is used, not of this file."""
        in_macro = any(a <= offset < b for a, b in self.macro_bodies)
        return in_macro and segments[0] not in ("crate", "$crate")


@dataclass
class Target:
    root: Path
    modules: dict[Module, set[str]] = field(default_factory=dict)  # module -> child names
    files: list[SourceFile] = field(default_factory=list)
    aliases: dict[Module, dict[str, Module]] = field(default_factory=dict)
    edges: dict[Module, dict[Module, str]] = field(default_factory=dict)  # -> where
    warnings: list[str] = field(default_factory=list)

    def load(self, module: Module, path: Path, child_dir: Path) -> None:
        source = path.read_text(encoding="utf-8")
        code, docs = lex(source)
        code, test_ranges = strip_test_only(code)
        code = VISIBILITY_IN.sub(lambda m: " " * len(m.group(0)), code)
        docs = [d for d in docs if not any(a <= d[0] < b for a, b in test_ranges)]
        file = SourceFile(path, code, docs, [Span(module, 0, len(code) + 1, child_dir)])
        file.macro_bodies = [
            (m.end(), closing(code, m.end() - 1)) for m in MACRO_RULES.finditer(code)
        ]
        self.files.append(file)
        self.modules.setdefault(module, set())
        for inline in INLINE_MOD.finditer(code):
            parent = file.owner(inline.start())
            span = next(s for s in file.spans if s.module == parent)
            name = parent + (inline.group(1),)
            self.modules[parent].add(inline.group(1))
            self.modules.setdefault(name, set())
            end = closing(code, inline.end() - 1)
            file.spans.append(Span(name, inline.end(), end, span.child_dir / inline.group(1)))
        for declaration in MOD_DECLARATION.finditer(code):
            parent = file.owner(declaration.start())
            span = next(s for s in file.spans if s.module == parent)
            name = declaration.group(1)
            self.modules[parent].add(name)
            attribute = PATH_ATTRIBUTE.search(source, 0, declaration.start())
            if attribute:
                base = path.parent if span.module == module else span.child_dir
                child = (base / attribute.group(1)).resolve()
                self.load(parent + (name,), child, child.parent)
                continue
            candidates = [span.child_dir / f"{name}.rs", span.child_dir / name / "mod.rs"]
            found = [c for c in candidates if c.is_file()]
            if not found:
                self.warnings.append(f"{path}: no file for `mod {name};`")
                continue
            child = found[0]
            child_dirs = child.parent if child.name == "mod.rs" else child.with_suffix("")
            self.load(parent + (name,), child, child_dirs)

    def start_of(self, module: Module, first: str) -> Module | None:
        """The module a path of `module` starting with `first` begins at, if it is one of
        this target's modules."""
        if first in ("crate", "$crate"):
            return ()
        if first == "self":
            return module
        if first == "super":
            return module[:-1]
        if first in self.modules.get(module, ()):
            return module + (first,)
        return self.aliases.get(module, {}).get(first)

    def resolve(self, module: Module, segments: list[str]) -> Module | None:
        """The deepest module a path walks through, or None for another crate's path."""
        current = self.start_of(module, segments[0])
        if current is None:
            return None
        rest = segments[1:]
        while rest and rest[0] == "super" and segments[0] == "super":
            current, rest = current[:-1], rest[1:]
        for segment in rest:
            if segment not in self.modules.get(current, ()):
                break
            current = current + (segment,)
        return current

    def add_edge(self, source: Module, target: Module | None, where: str) -> None:
        if target is not None and target != source:
            self.edges.setdefault(source, {}).setdefault(target, where)

    def scan(self) -> None:
        """Records every edge of every loaded file."""
        uses = []  # (file, offset, module, segments, local name)
        for file in self.files:
            code = list(file.code)
            for statement in USE_STATEMENT.finditer(file.code):
                end = file.code.find(";", statement.end())
                end = len(file.code) if end < 0 else end
                owner = file.owner(statement.start())
                for segments, local in expand_use(file.code[statement.end() : end]):
                    if not file.relative_to_call_site(statement.start(), segments):
                        uses.append((file, statement.start(), owner, segments, local))
                code[statement.start() : end] = " " * (end - statement.start())
            file.code_without_uses = "".join(code)
        for _ in range(2):  # an alias may be made from another alias
            for file, offset, owner, segments, local in uses:
                target = self.resolve(owner, segments)
                if target is not None and local != "*" and self.full_module(owner, segments):
                    self.aliases.setdefault(owner, {})[local] = target
        for file, offset, owner, segments, local in uses:
            where = f"{file.path.relative_to(ROOT)}:{file.line(offset)}"
            self.add_edge(owner, self.resolve(owner, segments), where)
        for file in self.files:
            for path in CODE_PATH.finditer(file.code_without_uses):
                owner = file.owner(path.start())
                segments = path.group(0).split("::")
                if file.relative_to_call_site(path.start(), segments):
                    continue
                where = f"{file.path.relative_to(ROOT)}:{file.line(path.start())}"
                self.add_edge(owner, self.resolve(owner, segments), where)
            for offset, text in file.docs:
                owner = file.owner(offset)
                for target in doc_link_targets(text):
                    where = f"{file.path.relative_to(ROOT)}:{file.line(offset)} (doc link)"
                    self.add_edge(owner, self.resolve(owner, target.split("::")), where)

    def full_module(self, module: Module, segments: list[str]) -> bool:
        """Whether every segment of the path is a module (so the path names a module)."""
        current = self.start_of(module, segments[0])
        if current is None:
            return False
        for segment in segments[1:]:
            if segment == "super":
                current = current[:-1]
            elif segment in self.modules.get(current, ()):
                current = current + (segment,)
            else:
                return False
        return True


def doc_link_targets(text: str) -> list[str]:
    """The paths of the intra-doc links of a doc comment's text."""
    targets = []
    for pattern in DOC_LINKS:
        for link in pattern.finditer(text):
            target = link.group(1).strip().strip("`")
            target = DISAMBIGUATOR.sub("", target)
            target = re.sub(r"(\(\)|!\(\)|!|<.*>)$", "", target)
            if DOC_PATH.fullmatch(target):
                targets.append(target)
    return targets


def circles(edges: dict[Module, dict[Module, str]], nodes: list[Module]) -> list[list[Module]]:
    """Tarjan's strongly connected components of more than one module."""
    index: dict[Module, int] = {}
    low: dict[Module, int] = {}
    stack: list[Module] = []
    on_stack: set[Module] = set()
    found: list[list[Module]] = []

    def visit(node: Module) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for successor in sorted(edges.get(node, {})):
            if successor not in index:
                visit(successor)
                low[node] = min(low[node], low[successor])
            elif successor in on_stack:
                low[node] = min(low[node], index[successor])
        if low[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                component.append(member)
                if member == node:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    sys.setrecursionlimit(max(1000, 4 * len(nodes) + 100))
    for node in sorted(nodes):
        if node not in index:
            visit(node)
    return found


def target_roots(crate: Path) -> list[Path]:
    """The root file of every target of a crate: Cargo's conventional places and the
    `path` of every target its manifest declares."""
    roots = [crate / "src/lib.rs", crate / "src/main.rs", crate / "build.rs"]
    roots += sorted((crate / "src/bin").glob("*.rs"))
    for folder in ("tests", "benches", "examples", "src/bin"):
        roots += sorted((crate / folder).glob("*.rs"))
        roots += sorted((crate / folder).glob("*/main.rs"))
    if tomllib is not None:
        manifest = tomllib.loads((crate / "Cargo.toml").read_text(encoding="utf-8"))
        declared = [manifest.get("lib", {})]
        for kind in ("bin", "test", "bench", "example"):
            declared += manifest.get(kind, [])
        roots += [crate / t["path"] for t in declared if "path" in t]
    unique = []
    for root in roots:
        if root.is_file() and root.resolve() not in [r.resolve() for r in unique]:
            unique.append(root)
    return unique


def main() -> int:
    targets = []
    for manifest in sorted(ROOT.glob("crates/*/Cargo.toml")):
        for root in target_roots(manifest.parent):
            target = Target(root)
            target.load((), root.resolve(), root.resolve().parent)
            target.scan()
            targets.append(target)
    failed = False
    for target in targets:
        for warning in target.warnings:
            print(f"warning: {warning}", file=sys.stderr)
        for circle in circles(target.edges, list(target.modules)):
            failed = True
            root = target.root.relative_to(ROOT)
            print(f"{root}: import circle of {len(circle)} modules: "
                  + ", ".join(display(m) for m in circle))
            for source in circle:
                for destination, where in sorted(target.edges.get(source, {}).items()):
                    if destination in circle:
                        print(f"  {display(source)} -> {display(destination)}  ({where})")
    if failed:
        print("module rule broken: move what both sides use into a module that imports "
              "neither (see the docstring of scripts/dev/module_cycles.py)")
        return 1
    count = sum(len(t.modules) for t in targets)
    print(f"ok: no import circles among the {count} modules of {len(targets)} targets")
    return 0


if __name__ == "__main__":
    sys.exit(main())
