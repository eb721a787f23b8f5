#!/usr/bin/env python3
"""Fails when a file of the library is missing from docs/architecture.md's map.

The map is the first fenced block of docs/architecture.md. A line that starts in column 0
names a directory (`include/mproc/`, `src/`, `src/sys/`...); the indented lines under it
list its files in a name column — the text before the first run of two or more spaces —
by path relative to that directory, with or without the extension (`pool.hpp`,
`detail/task`, `engine`), several on a line separated by commas, and `*` as a wildcard
(`detail/codec_*`). A line indented eight columns or more continues a description.

Every header under include/mproc/ and every source file under src/ must be named there,
under the deepest listed directory that contains it, so that the map stays true as files
are added. Usage: check_architecture_map.py <repository root> [--also <path>...]; each
--also path (relative to the root) is checked as if it existed: the test suite passes
one that is named nowhere, to show that a missing file is caught.
"""
import fnmatch
import pathlib
import re
import sys


def map_block(text):
    match = re.search(r"^```[^\n]*\n(.*?)^```", text, re.S | re.M)
    if not match:
        raise SystemExit("docs/architecture.md: no fenced map block found")
    return match.group(1)


def listed_names(block):
    """{directory: set of names (relative paths, extensions dropped) listed under it}"""
    listed = {}
    directory = None
    for line in block.splitlines():
        if not line.strip():
            continue
        indent = len(line) - len(line.lstrip(" "))
        if indent == 0:
            directory = line.split()[0].rstrip("/")
            listed.setdefault(directory, set())
            continue
        if directory is None or indent >= 8:
            continue
        names = re.split(r"\s{2,}", line.strip(), maxsplit=1)[0]
        for token in re.split(r"[^A-Za-z0-9_./*+-]+", names):
            token = token.strip(".+")
            if token:
                listed[directory].add(re.sub(r"\.(hpp|cpp|h|c)$", "", token))
    return listed


def main():
    arguments = sys.argv[1:]
    pretend = [arguments[i + 1] for i, a in enumerate(arguments[:-1]) if a == "--also"]
    arguments = [a for i, a in enumerate(arguments) if a != "--also" and (i == 0 or arguments[i - 1] != "--also")]
    root = pathlib.Path(arguments[0] if arguments else ".").resolve()
    listed = listed_names(map_block((root / "docs" / "architecture.md").read_text(encoding="utf-8")))
    files = sorted(
        [p for p in (root / "include" / "mproc").rglob("*") if p.suffix in (".hpp", ".h")]
        + [p for p in (root / "src").rglob("*") if p.suffix in (".cpp", ".hpp", ".c", ".h")]
    )
    files += [root / p for p in pretend]
    missing = []
    for path in files:
        relative = path.relative_to(root).as_posix()
        homes = [d for d in listed if relative.startswith(d + "/")]
        if not homes:
            missing.append(f"{relative} (its directory is not in the map)")
            continue
        home = max(homes, key=len)
        name = re.sub(r"\.(hpp|cpp|h|c)$", "", relative[len(home) + 1:])
        if not any(fnmatch.fnmatchcase(name, pattern) for pattern in listed[home]):
            missing.append(f"{relative} (expected as '{name}' under {home}/)")
    if missing:
        print("docs/architecture.md's map does not name these files:")
        for entry in missing:
            print("  " + entry)
        return 1
    print(f"docs/architecture.md names all {len(files)} library files")
    return 0


if __name__ == "__main__":
    sys.exit(main())
