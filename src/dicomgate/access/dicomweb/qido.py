"""QIDO-RS searches over the index (never the files); functions take the connection explicitly."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from functools import cache
from typing import Any

from sqlalchemy import (
    ColumnElement,
    Connection,
    and_,
    bindparam,
    distinct,
    exists,
    func,
    literal_column,
    select,
)

from dicomgate.access.dicomweb.attributes import ATTRIBUTES, BY_KEYWORD, DEFAULT_RETURN, Level
from dicomgate.access.dicomweb.qido_params import Match, QidoQuery, keywords_to_return
from dicomgate.access.dicomweb.resources import AnySelect, Scope
from dicomgate.archive.models import Instance, Series, Study

RETRIEVE_URL = "00081190"


@dataclass(frozen=True, slots=True)
class Within:
    """The path a search is under: ``/studies/{study}``, ``.../series/{series}``, or nothing."""

    study: str | None = None
    series: str | None = None


Params = dict[str, Any]


def _wildcard(
    dialect: str, column: Any, value: str, fold_case: bool, name: str
) -> tuple[ColumnElement[bool], Params]:
    sqlite = dialect == "sqlite"
    if sqlite and not fold_case:
        # GLOB is case-sensitive like DICOM matching; only '[' needs escaping.
        glob: ColumnElement[bool] = column.op("GLOB")(bindparam(name))
        return glob, {name: value.replace("[", "[[]")}
    escaped = value.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
    pattern = escaped.replace("*", "%").replace("?", "_")
    if fold_case and not sqlite:
        return column.ilike(bindparam(name), escape="\\"), {name: pattern}
    return column.like(bindparam(name), escape="\\"), {name: pattern}  # SQLite: no case


def _condition(
    dialect: str, column: Any, match: Match, name: str
) -> tuple[ColumnElement[bool] | None, Params]:
    """Return the condition of one matching key, its values as parameters named from ``name``.

    The values are never part of the statement, so one statement per shape of query is built
    and its cache key computed once (``_statement``).
    """
    fold = match.attribute.vr == "PN"
    if match.kind == "universal":
        return None, {}
    if match.kind == "uids":
        return column.in_(bindparam(name, expanding=True)), {name: list(match.values)}
    if match.kind == "range":
        low, high = match.values
        parts: list[ColumnElement[bool]] = [column != ""]
        params: Params = {}
        if low:
            parts.append(column >= bindparam(f"{name}_lo"))
            params[f"{name}_lo"] = low
        if high:
            parts.append(column <= bindparam(f"{name}_hi"))
            params[f"{name}_hi"] = high
        return and_(*parts), params
    value = match.values[0]
    assert value is not None
    if match.kind == "wildcard":
        return _wildcard(dialect, column, value, fold, name)
    if match.attribute.vr in ("IS", "US"):
        return column == bindparam(name), {name: int(value)}
    if fold:
        return func.lower(column) == bindparam(name), {name: value.lower()}
    return column == bindparam(name), {name: value}


def _conditions(dialect: str, query: QidoQuery) -> tuple[list[ColumnElement[bool]], Params]:
    conditions: list[ColumnElement[bool]] = []
    params: Params = {}
    for number, match in enumerate(query.matches):
        name = f"qido_{number}"
        if match.attribute.keyword == "ModalitiesInStudy":
            inner, values = _condition(dialect, Series.modality, match, name)
            if inner is not None:
                conditions.append(exists().where(Series.study_pk == Study.pk, inner))
        else:
            inner, values = _condition(dialect, match.attribute.column, match, name)
            if inner is not None:
                conditions.append(inner)
        params.update(values)
    return conditions, params


def _counts(level: Level, dialect: str) -> list[Any]:
    """Correlated subqueries for the computed attributes, so one statement answers a search."""
    if level is Level.SERIES:
        count = select(func.count(Instance.pk)).where(Instance.series_pk == Series.pk)
        return [count.scalar_subquery().label("NumberOfSeriesRelatedInstances")]
    if level is not Level.STUDY:
        return []
    modality = distinct(Series.modality)
    joined = (
        func.string_agg(modality, literal_column("','"))
        if dialect == "postgresql"
        else func.group_concat(modality)
    )
    of_study = Series.study_pk == Study.pk
    in_study = select(func.count(Instance.pk)).join(Series, Instance.series_pk == Series.pk)
    return [
        select(joined).where(of_study).scalar_subquery().label("ModalitiesInStudy"),
        select(func.count(Series.pk))
        .where(of_study)
        .scalar_subquery()
        .label("NumberOfStudyRelatedSeries"),
        in_study.where(of_study).scalar_subquery().label("NumberOfStudyRelatedInstances"),
    ]


@cache
def _columns(level: Level, dialect: str) -> tuple[Any, ...]:
    """Index columns labelled with their attribute keywords, then the computed attributes."""
    columns: list[Any] = [
        a.column.label(a.keyword) for a in ATTRIBUTES if a.column is not None and a.level <= level
    ]
    return tuple(columns + _counts(level, dialect))


@cache
def _joined(level: Level, dialect: str) -> AnySelect:
    """Return the select of one level, built once (building it costs more than running it)."""
    query: AnySelect = select(*_columns(level, dialect)).select_from(Study)
    if level >= Level.SERIES:
        query = query.join(Series, Series.study_pk == Study.pk)
    if level is Level.INSTANCE:
        query = query.join(Instance, Instance.series_pk == Series.pk)
    return query


def _base(level: Level, within: Within, dialect: str) -> AnySelect:
    query = _joined(level, dialect)
    if within.study is not None:
        query = query.where(Study.study_uid == bindparam("qido_study"))
    if within.series is not None:
        query = query.where(Series.series_uid == bindparam("qido_series"))
    return query


def _order(query: AnySelect, level: Level) -> AnySelect:
    if level is Level.STUDY:
        return query.order_by(Study.pk)
    if level is Level.SERIES:
        return query.order_by(Study.pk, Series.series_number, Series.pk)
    return query.order_by(Series.pk, Instance.instance_number, Instance.pk)


_STATEMENTS: dict[tuple[Any, ...], AnySelect] = {}
_MAX_STATEMENTS = 512  # shapes of query kept; a client inventing new ones empties the cache


def _shape(match: Match) -> tuple[Any, ...]:
    """Return what of a matching key changes its statement: not its values."""
    if match.kind == "range":  # a range open at one end has one comparison less
        return (match.attribute.keyword, match.kind, *(bool(v) for v in match.values))
    return (match.attribute.keyword, match.kind)


def _statement(
    dialect: str, query: QidoQuery, within: Within, scope: Scope
) -> tuple[AnySelect, Params]:
    """Return the statement of the query's shape (built once) and the query's parameters.

    Building a select and computing its cache key for SQLAlchemy's compiled cache took about
    a quarter of a search's Python time; a statement kept per shape (level, path, matching
    keys and kinds, whether a scope applies) has its key computed once.
    """
    conditions, params = _conditions(dialect, query)
    shape = (
        dialect,
        query.level,
        within.study is not None,
        within.series is not None,
        scope.projects is None,
        tuple(_shape(match) for match in query.matches),
    )
    sql = _STATEMENTS.get(shape)
    if sql is None:
        sql = _order(_base(query.level, within, dialect).where(*conditions), query.level)
        if scope.projects is not None:
            sql = sql.where(Study.project_id.in_(bindparam("qido_projects", expanding=True)))
        sql = sql.limit(bindparam("qido_limit")).offset(bindparam("qido_offset"))
        if len(_STATEMENTS) >= _MAX_STATEMENTS:
            _STATEMENTS.clear()
        _STATEMENTS[shape] = sql
    return sql, params


def search(
    connection: Connection, query: QidoQuery, within: Within, scope: Scope, limit: int
) -> tuple[list[dict[str, Any]], bool]:
    """Run a search; return the DICOM JSON results and whether more rows matched.

    Parameters
    ----------
    connection
        A read connection (``Database.read_connection``).
    query
        The parsed query.
    within
        The study or series the search is under.
    scope
        What the caller may see.
    limit
        The page size (``query.limit`` already capped, or the server's maximum).
    """
    sql, params = _statement(connection.dialect.name, query, within, scope)
    params.update(qido_limit=limit + 1, qido_offset=query.offset)
    params.update(qido_study=within.study, qido_series=within.series)
    if scope.projects is not None:
        params["qido_projects"] = sorted(scope.projects)
    rows = list(connection.execute(sql, params))
    more = len(rows) > limit
    rows = rows[:limit]
    keywords = keywords_to_return(query, DEFAULT_RETURN[query.level])
    values = _values(query.level, rows)
    return [_dataset(keywords, v) for v in values], more


def _values(level: Level, rows: Sequence[Any]) -> list[dict[str, Any]]:
    out = [dict(row._mapping) for row in rows]
    for values in out:
        if level is Level.STUDY:
            joined = values["ModalitiesInStudy"]
            values["ModalitiesInStudy"] = sorted(m for m in (joined or "").split(",") if m)
        url = f"/studies/{values['StudyInstanceUID']}"
        if level >= Level.SERIES:
            url += f"/series/{values['SeriesInstanceUID']}"
        if level is Level.INSTANCE:
            url += f"/instances/{values['SOPInstanceUID']}"
        values[RETRIEVE_URL] = url
    return out


def _element(vr: str, value: Any) -> dict[str, Any]:
    if value is None or value == "" or value == []:
        return {"vr": vr}
    values = value if isinstance(value, list) else [value]
    if vr == "PN":
        return {"vr": vr, "Value": [{"Alphabetic": v} for v in values]}
    if vr == "IS":
        return {"vr": vr, "Value": [int(v) for v in values]}
    return {"vr": vr, "Value": values}


def _dataset(keywords: list[str], values: dict[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for keyword in keywords:
        attr = BY_KEYWORD[keyword]
        if keyword in values or attr.level is Level.STUDY:
            out[attr.key] = _element(attr.vr, values.get(keyword))
    out[RETRIEVE_URL] = {"vr": "UR", "Value": ["{+base}" + values[RETRIEVE_URL]]}
    return dict(sorted(out.items()))
