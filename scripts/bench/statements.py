#!/usr/bin/env python3
"""The statements one database received, from PostgreSQL's log, normalised for comparison.

  statements.py extract LOG FROM TO DATABASE   statements logged for DATABASE between two byte
                                               offsets of LOG (needs log_statement = 'all' on it)
  statements.py compare A B                    exit 0 when the two lists are the same, 1 if not

Normalised: protocol prefixes dropped (`statement:`, `execute <name>:`), whitespace collapsed,
trailing `;` dropped, each bound parameter whose value was NULL written `NULL` (pgbench cannot bind
a NULL, so its scripts write the literal), every other placeholder written `$?` (pgbench numbers
its `:variables` in order of appearance, which need not be the service's numbering). `SELECT 1`
is the pool's check of a connection that sat idle for over a second; it is kept out of the
comparison (under load no connection idles) and listed apart with a `--` prefix.

Parameter values are never printed.
"""

import re
import sys

# Needs %p and %d in log_line_prefix (Debian's default is '%m [%p] %q%u@%d ').
LINE = re.compile(
    r"^.*?\[(?P<pid>\d+)\] (?:(?P<user>[^@\s]*)@(?P<db>\S*) )?"
    r"(?P<level>LOG|DETAIL|ERROR|WARNING|STATEMENT|HINT|CONTEXT|FATAL|PANIC|NOTICE|INFO|DEBUG\d?):\s+(?P<text>.*)$"
)
STATEMENT = re.compile(r"^(?:statement|execute [^:]*): (?P<sql>.*)$", re.S)
PARAM = re.compile(r"\$(\d+) = (NULL|'(?:[^']|'')*')")
PLACEHOLDER = re.compile(r"\$(\d+)\b")
POOL_CHECK = "SELECT 1"


def entries(path, start, end):
    with open(path, "rb") as f:
        f.seek(start)
        chunk = f.read(end - start).decode(errors="replace")
    current = None
    for line in chunk.splitlines():
        match = LINE.match(line)
        if match:
            if current:
                yield current
            current = dict(match.groupdict())
        elif current is not None and line.startswith("\t"):
            current["text"] += "\n" + line[1:]
    if current:
        yield current


def extract(path, start, end, database):
    statements = []
    last_by_pid = {}
    for entry in entries(path, int(start), int(end)):
        if entry["db"] != database:
            continue
        if entry["level"] == "LOG":
            match = STATEMENT.match(entry["text"])
            if match:
                item = {"sql": match.group("sql"), "nulls": set()}
                statements.append(item)
                last_by_pid[entry["pid"]] = item
        elif entry["level"] == "DETAIL" and entry["text"].startswith("parameters:"):
            item = last_by_pid.get(entry["pid"])
            if item is not None:
                item["nulls"] = {n for n, value in PARAM.findall(entry["text"]) if value == "NULL"}
        elif entry["level"] in ("ERROR", "FATAL"):
            statements.append({"sql": f"-- server {entry['level']}: {entry['text']}", "nulls": set()})
    out = []
    for item in statements:
        sql = PLACEHOLDER.sub(lambda m: "NULL" if m.group(1) in item["nulls"] else "$?", item["sql"])
        sql = " ".join(sql.split()).rstrip(";").strip()
        out.append(f"-- pool check: {sql}" if sql == POOL_CHECK else sql)
    return out


def significant(path):
    with open(path, encoding="utf-8") as f:
        return [line.rstrip("\n") for line in f if line.strip() and not line.startswith("--")]


def main():
    if len(sys.argv) == 6 and sys.argv[1] == "extract":
        for sql in extract(*sys.argv[2:]):
            print(sql)
    elif len(sys.argv) == 4 and sys.argv[1] == "compare":
        sys.exit(0 if significant(sys.argv[2]) == significant(sys.argv[3]) else 1)
    else:
        sys.exit(__doc__)


if __name__ == "__main__":
    main()
