"""The README's compatibility table says what tests/compat proves (tests/compat/table.py)."""

from __future__ import annotations

import re

from tests.compat.table import REPO, ROWS, readme_table, table


def test_every_row_names_a_test_that_exists() -> None:
    for row in ROWS:
        module, _, function = row.test.partition("::")
        source = (REPO / "tests" / module).read_text()
        assert not function or re.search(rf"^def {function}\(", source, re.M), row.test


def test_the_readme_table_is_the_generated_one() -> None:
    def without_versions(text: str) -> list[list[str]]:
        rows = [line.split(" | ") for line in text.strip().splitlines()]
        return [row[:1] + row[2:] if len(row) > 2 else row for row in rows]

    assert without_versions(readme_table()) == without_versions(table(versions=False)), (
        "README.md's compatibility table is stale:"
        " run .venv/bin/python -m tests.compat.table --write"
    )
