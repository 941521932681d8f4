"""How a rejected import is described: one ImportRejected carrying every RowProblem, and one
line per problem that a person can find in the file (row 0 is the file or its header).
"""

from __future__ import annotations

from collections.abc import Sequence

from node.errors import ImportRejected, RowProblem


def describe(problem: RowProblem) -> str:
    """`row 3, PJRQ: ...`; whole-file problems read `file: ...` or `header, PJTX: ...`."""
    if problem.row == 0:
        where = "file" if problem.field == "file" else f"header, {problem.field}"
    else:
        where = f"row {problem.row}, {problem.field}"
    return f"{where}: {problem.reason}"


def rejected(format_name: str, problems: Sequence[RowProblem]) -> ImportRejected:
    """The error for a whole file refused, naming how many problems and the first."""
    rows = len({p.row for p in problems})
    noun = "problem" if len(problems) == 1 else "problems"
    return ImportRejected(
        f"{format_name} file rejected, nothing imported: {len(problems)} {noun} "
        f"in {rows} row{'s' if rows != 1 else ''}; first: {describe(problems[0])}",
        list(problems),
    )
