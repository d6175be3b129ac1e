"""docs/errors.md stays true: every row names tests that exist and raise it.

A row of that table is a promise to users; this walks the table, so a row
whose test is renamed, deleted or never written fails here.
"""

import ast
import os
import re

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TABLE = os.path.join(ROOT, "docs", "errors.md")


def _test_files():
    for folder, _, names in os.walk(os.path.join(ROOT, "tests")):
        for name in names:
            if name.startswith("test_") and name.endswith(".py"):
                yield os.path.relpath(os.path.join(folder, name), ROOT)


def _rows():
    """(number, error cell, [(test file, test function)]) for each row.

    A bare test name stands for the one test file that defines it.
    """
    index = {}
    for path in _test_files():
        for name in _functions(path):
            index.setdefault(name, []).append(path)
    rows, previous = [], []
    with open(TABLE) as f:
        for line in f:
            match = re.match(r"\|\s*(\d+)\s*\|", line)
            if not match:
                continue
            cells = [c.strip() for c in re.split(r"(?<!\\)\|", line.strip())[1:-1]]
            error, tests = cells[2], cells[-1]
            refs = []
            for token in re.findall(r"`([^`]+)`", tests):
                if "::" in token:
                    refs.append(tuple(token.split("::")))
                elif token.startswith("test_"):
                    files = index.get(token, [])
                    # Ambiguous or unknown names are reported by the test.
                    refs.append((files[0] if len(files) == 1 else str(files), token))
            if tests.startswith("same"):
                refs = previous + refs
            rows.append((int(match.group(1)), error, refs))
            previous = refs
    return rows


def _functions(path):
    with open(os.path.join(ROOT, path)) as f:
        text = f.read()
    return {
        node.name: ast.get_source_segment(text, node)
        for node in ast.walk(ast.parse(text))
        if isinstance(node, ast.FunctionDef)
    }


def test_rows_are_numbered_in_order():
    numbers = [n for n, _, _ in _rows()]
    assert numbers == list(range(1, len(numbers) + 1)), numbers
    assert len(numbers) >= 43


def test_every_row_names_existing_tests_that_expect_its_error():
    problems = []
    for number, error, refs in _rows():
        if not refs:
            problems.append(f"row {number}: names no test")
            continue
        sources = []
        for path, name in refs:
            if path.startswith("["):
                problems.append(
                    f"row {number}: {name} is defined in {path}; name its file"
                )
                continue
            if not os.path.exists(os.path.join(ROOT, path)):
                problems.append(f"row {number}: no file {path}")
                continue
            source = _functions(path).get(name)
            if source is None:
                problems.append(f"row {number}: {path} has no test {name}")
            else:
                sources.append(source)
        # The exception the row promises, e.g. `ValueError: ...`; a row that
        # promises a logged notice (not an error) names none.
        kind = re.match(r"`?(\w+(?:Error|Exception))\b", error)
        if kind and sources and not any(kind.group(1) in s for s in sources):
            # A parametrised test names its exception in the parameters.
            module = "".join(open(os.path.join(ROOT, p)).read() for p, _ in refs)
            if kind.group(1) not in module:
                problems.append(f"row {number}: no named test expects {kind.group(1)}")
    assert not problems, "\n".join(problems)
