"""The one project filter every read query applies: a caller sees only their projects' rows.

``projects`` is ``Caller.visible_projects()``: ``None`` for a site admin (everything), else the
set of project ids the caller may read. Rows with no project yet (data still in staging) are
visible to site admins only. A row the caller may not see answers like one that does not exist.
"""

from __future__ import annotations

from sqlalchemy import ColumnElement, true
from sqlalchemy.orm import InstrumentedAttribute

Visible = frozenset[str] | None


def visible(column: InstrumentedAttribute[str | None], projects: Visible) -> ColumnElement[bool]:
    """Return the SQL condition "this row's project is one the caller may read"."""
    if projects is None:
        return true()
    return column.in_(sorted(projects))


def can_see(project: str | None, projects: Visible) -> bool:
    """Return True when a row of ``project`` is visible to a caller with ``projects``."""
    return projects is None or (project is not None and project in projects)
