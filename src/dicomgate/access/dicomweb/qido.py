"""QIDO-RS searches over the index (never the files); functions take the connection explicitly."""

from __future__ import annotations

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
from dicomgate.raw_sql import RawStatement, listed, one_of

RETRIEVE_URL = "00081190"


@dataclass(frozen=True, slots=True)
class Within:
    """The path a search is under: ``/studies/{study}``, ``.../series/{series}``, or nothing."""

    study: str | None = None
    series: str | None = None


Params = dict[str, Any]


def _wildcard(dialect: str, column: Any, fold_case: bool, name: str) -> ColumnElement[bool]:
    if dialect == "sqlite" and not fold_case:
        # GLOB is case-sensitive like DICOM matching; only '[' needs escaping.
        glob: ColumnElement[bool] = column.op("GLOB")(bindparam(name))
        return glob
    like = column.ilike if fold_case and dialect != "sqlite" else column.like  # SQLite: no case
    clause: ColumnElement[bool] = like(bindparam(name), escape="\\")
    return clause


def _wildcard_pattern(dialect: str, value: str, fold_case: bool) -> str:
    if dialect == "sqlite" and not fold_case:
        return value.replace("[", "[[]")
    escaped = value.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
    return escaped.replace("*", "%").replace("?", "_")


def _condition(dialect: str, column: Any, match: Match, name: str) -> ColumnElement[bool] | None:
    """Return the condition of one matching key, its values bound as parameters from ``name``.

    The values are never part of the statement, so one statement per shape of query is built
    (``_statement``); ``_params`` gives the values under the same names.
    """
    fold = match.attribute.vr == "PN"
    if match.kind == "universal":
        return None
    if match.kind == "uids":
        return one_of(dialect, column, name)
    if match.kind == "range":
        low, high = match.values
        parts: list[ColumnElement[bool]] = [column != ""]
        if low:
            parts.append(column >= bindparam(f"{name}_lo"))
        if high:
            parts.append(column <= bindparam(f"{name}_hi"))
        return and_(*parts)
    if match.kind == "wildcard":
        return _wildcard(dialect, column, fold, name)
    equal: ColumnElement[bool] = (func.lower(column) if fold else column) == bindparam(name)
    return equal


def _params(dialect: str, match: Match, name: str) -> Params:
    """Return the values ``_condition`` binds for one matching key."""
    if match.kind == "universal":
        return {}
    if match.kind == "uids":
        return {name: listed(dialect, [v for v in match.values if v is not None])}
    if match.kind == "range":
        low, high = match.values
        bounds = ((f"{name}_lo", low), (f"{name}_hi", high))
        return {key: bound for key, bound in bounds if bound}
    value = match.values[0]
    assert value is not None
    fold = match.attribute.vr == "PN"
    if match.kind == "wildcard":
        return {name: _wildcard_pattern(dialect, value, fold)}
    if match.attribute.vr in ("IS", "US"):
        return {name: int(value)}
    return {name: value.lower() if fold else value}


def _names(query: QidoQuery) -> list[str]:
    return [f"qido_{number}" for number in range(len(query.matches))]


def _conditions(dialect: str, query: QidoQuery) -> list[ColumnElement[bool]]:
    conditions: list[ColumnElement[bool]] = []
    for match, name in zip(query.matches, _names(query), strict=True):
        if match.attribute.keyword == "ModalitiesInStudy":
            inner = _condition(dialect, Series.modality, match, name)
            if inner is not None:
                conditions.append(exists().where(Series.study_pk == Study.pk, inner))
        else:
            inner = _condition(dialect, match.attribute.column, match, name)
            if inner is not None:
                conditions.append(inner)
    return conditions


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


@dataclass(frozen=True, slots=True)
class _Statement:
    """A search's statement, run on the driver's cursor, and the labels of its columns.

    Core's execution (compiled-cache lookup, execution context, events, a result object)
    took more of a search's time than SQLite took to answer it. The values are the driver's:
    every column a search returns is text or an integer, which no result processor changes.
    """

    raw: RawStatement
    labels: tuple[str, ...]


_STATEMENTS: dict[tuple[Any, ...], _Statement] = {}
_MAX_STATEMENTS = 512  # shapes of query kept; a client inventing new ones empties the cache


def _shape(match: Match) -> tuple[Any, ...]:
    """Return what of a matching key changes its statement: not its values."""
    if match.kind == "range":  # a range open at one end has one comparison less
        return (match.attribute.keyword, match.kind, *(bool(v) for v in match.values))
    return (match.attribute.keyword, match.kind)


def _statement(
    dialect: str, query: QidoQuery, within: Within, scope: Scope
) -> tuple[_Statement, Params]:
    """Return the statement of the query's shape (built once) and the query's parameters.

    Building a select and computing its cache key for SQLAlchemy's compiled cache took about
    a quarter of a search's Python time; a statement kept per shape (level, path, matching
    keys and kinds, whether a scope applies) has its key computed once.
    """
    params: Params = {}
    for match, name in zip(query.matches, _names(query), strict=True):
        params.update(_params(dialect, match, name))
    shape = (
        dialect,
        query.level,
        within.study is not None,
        within.series is not None,
        scope.projects is None,
        tuple(_shape(match) for match in query.matches),
    )
    statement = _STATEMENTS.get(shape)
    if statement is None:
        conditions = _conditions(dialect, query)
        sql = _order(_base(query.level, within, dialect).where(*conditions), query.level)
        if scope.projects is not None:
            sql = sql.where(one_of(dialect, Study.project_id, "qido_projects"))
        sql = sql.limit(bindparam("qido_limit")).offset(bindparam("qido_offset"))
        if len(_STATEMENTS) >= _MAX_STATEMENTS:
            _STATEMENTS.clear()
        _STATEMENTS[shape] = statement = _Statement(RawStatement(sql), _labels(sql))
    return statement, params


def _labels(sql: AnySelect) -> tuple[str, ...]:
    return tuple(column.name for column in sql.selected_columns)


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
    dialect = connection.dialect.name
    statement, params = _statement(dialect, query, within, scope)
    params.update(qido_limit=limit + 1, qido_offset=query.offset)
    params.update(qido_study=within.study, qido_series=within.series)
    if scope.projects is not None:
        params["qido_projects"] = listed(dialect, sorted(scope.projects))
    labels = statement.labels
    rows = [dict(zip(labels, row, strict=True)) for row in statement.raw.rows(connection, params)]
    more = len(rows) > limit
    rows = rows[:limit]
    keywords = keywords_to_return(query, DEFAULT_RETURN[query.level])
    values = _values(query.level, rows)
    return [_dataset(keywords, v) for v in values], more


def _values(level: Level, out: list[dict[str, Any]]) -> list[dict[str, Any]]:
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
