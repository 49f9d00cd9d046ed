"""What a SQL apply run changes: the tables and columns of the target (checked to be plain
names), and one statement per change, edit chains and dependent records included."""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from airflow_provider_xcompliance.apply.rules import (
    DELETE,
    SCRUB_GEO,
)
from airflow_provider_xcompliance.exceptions import ApplyConfigError

_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_$]*(\.[A-Za-z_][A-Za-z0-9_$]*)?")


FLAGGED_TABLE = "xc_flagged"


def sql_name(value: Any, what: str) -> str:
    """A table or column name, checked: names become SQL text, so only plain (optionally
    schema-qualified) identifiers are accepted."""
    if not isinstance(value, str) or not _NAME.fullmatch(value):
        raise ApplyConfigError(
            f"{what} {value!r} is not a plain SQL name (letters, digits, _, one optional 'schema.')"
        )
    return value


@dataclass(frozen=True)
class SqlChange:
    """One statement's worth of change: the rows of ``table`` whose ``column`` is a result ID
    asking for ``change``, with ``id_column`` naming each row for the audit."""

    table: str
    column: str
    change: str  # DELETE or SCRUB_GEO
    record_type: str  # "tweet" or "user"
    id_column: str
    geo_columns: tuple[str, ...] = ()
    # The flagged changes whose IDs select rows (by default the change itself): a geo dependent
    # goes with its tweet's delete and with its scrub_geo.
    when: tuple[str, ...] = ()
    # (table, key, column): ``column`` here references ``key`` of ``table``, whose ``column`` is
    # matched with the flagged IDs (the media of a flagged user's tweets).
    through: tuple[str, str, str] | None = None

    @property
    def _changes(self) -> str:
        return ", ".join(f"'{change}'" for change in self.when or (self.change,))

    def _still_to_change(self, prefix: str = "") -> str:
        """Scrubbing touches only rows that still hold geo data, so a second run touches none."""
        if self.change != SCRUB_GEO:
            return ""
        return " AND (" + " OR ".join(f"{prefix}{c} IS NOT NULL" for c in self.geo_columns) + ")"

    def statement(self) -> str:
        selected = f"SELECT id FROM {FLAGGED_TABLE} WHERE change IN ({self._changes})"
        if self.through:
            table, key, column = self.through
            selected = f"SELECT {key} FROM {table} WHERE {column} IN ({selected})"
        where = f"{self.column} IN ({selected})" + self._still_to_change()
        if self.change == DELETE:
            return f"DELETE FROM {self.table} WHERE {where}"
        assignments = ", ".join(f"{c} = NULL" for c in self.geo_columns)
        return f"UPDATE {self.table} SET {assignments} WHERE {where}"

    def matched(self, columns: str) -> str:
        """``SELECT columns`` over the rows this change touches, joined with their result ``f``."""
        if self.through:
            table, key, column = self.through
            joined = (
                f"JOIN {table} x ON t.{self.column} = x.{key} JOIN {FLAGGED_TABLE} f ON x.{column} = f.id"
            )
        else:
            joined = f"JOIN {FLAGGED_TABLE} f ON t.{self.column} = f.id"
        return (
            f"SELECT {columns} FROM {self.table} t {joined} "
            f"WHERE f.change IN ({self._changes}){self._still_to_change('t.')}"
        )


@dataclass(frozen=True)
class SqlTarget:
    """Where the results go: the tables and columns, checked to be plain names."""

    table: str
    id_column: str = "id"
    author_id_column: str | None = None
    geo_columns: tuple[str, ...] = ()
    users_table: str | None = None
    users_id_column: str = "id"
    audit_table: str | None = None
    edit_root_column: str | None = None  # the first tweet ID of an edit chain, on every version
    dependents: tuple[tuple[str, str], ...] = ()  # (table, column) of rows that reference a tweet
    user_dependents: tuple[tuple[str, str], ...] = ()  # ... that reference a user
    geo_dependents: tuple[tuple[str, str], ...] = ()  # ... that are a tweet's geo data

    def __post_init__(self) -> None:
        for name in ("dependents", "user_dependents", "geo_dependents"):
            pairs = getattr(self, name)
            pairs = tuple(pairs.items()) if isinstance(pairs, dict) else tuple(map(tuple, pairs))
            object.__setattr__(self, name, pairs)
            for table, column in pairs:
                sql_name(table, f"{name} table")
                sql_name(column, f"{name} column of {table}")
        if self.edit_root_column is not None:
            sql_name(self.edit_root_column, "edit_root_column")
        sql_name(self.table, "table")
        sql_name(self.id_column, "id_column")
        for column in self.geo_columns:
            sql_name(column, "geo column")
        if self.author_id_column is not None:
            sql_name(self.author_id_column, "author_id_column")
        if self.users_table is not None:
            sql_name(self.users_table, "users_table")
            sql_name(self.users_id_column, "users_id_column")
        if self.audit_table is not None:
            sql_name(self.audit_table, "audit_table")

    def changes(self, job_type: str) -> list[SqlChange]:
        """The statements a job type's results call for, in the order they run: the records that
        hang off a tweet or a user before it, a user's tweets before the user, so that foreign keys
        hold (and a dependent of a user's tweet is found while the tweet is still there)."""
        if job_type == "tweets":
            changes = [SqlChange(t, c, DELETE, "tweet", c) for t, c in self.dependents]
            changes += [
                SqlChange(t, c, DELETE, "tweet", c, when=(DELETE, SCRUB_GEO)) for t, c in self.geo_dependents
            ]
            changes.append(SqlChange(self.table, self.id_column, DELETE, "tweet", self.id_column))
            if self.geo_columns:
                changes.append(
                    SqlChange(
                        self.table, self.id_column, SCRUB_GEO, "tweet", self.id_column, self.geo_columns
                    )
                )
            return changes
        changes = [SqlChange(t, c, DELETE, "user", c) for t, c in self.user_dependents]
        if self.author_id_column:  # `table` holds tweets, matched by their author
            via = (self.table, self.id_column, self.author_id_column)
            for table, column in (*self.dependents, *self.geo_dependents):
                changes.append(SqlChange(table, column, DELETE, "tweet", column, through=via))
            changes.append(SqlChange(self.table, self.author_id_column, DELETE, "tweet", self.id_column))
        else:  # `table` holds the users themselves
            changes.append(SqlChange(self.table, self.id_column, DELETE, "user", self.id_column))
        if self.users_table:
            changes.append(
                SqlChange(self.users_table, self.users_id_column, DELETE, "user", self.users_id_column)
            )
        return changes

    def edit_chains(self, job_type: str) -> bool:
        """Whether a tweets job's flagged IDs reach every stored version of their edit chains."""
        return job_type == "tweets" and self.edit_root_column is not None

    def required_columns(self, job_type: str) -> dict[str, set[str]]:
        needed: dict[str, set[str]] = {}
        for change in self.changes(job_type):
            needed.setdefault(change.table, set()).update(
                {change.column, change.id_column, *change.geo_columns}
            )
        if self.edit_chains(job_type):
            needed[self.table].add(str(self.edit_root_column))
        return needed


def check_tables(cur: Any, required: dict[str, set[str]]) -> None:
    """Bad configuration fails before anything is read or changed, naming the table or column."""
    for table, columns in required.items():
        try:
            cur.execute(f"SELECT * FROM {table} WHERE 1 = 0")
        except Exception as exc:
            raise ApplyConfigError(f"Table {table} cannot be read: {exc}".strip()) from None
        present = {d[0].lower() for d in cur.description}
        cur.fetchall()
        for column in sorted(columns):
            if column.lower() not in present:
                raise ApplyConfigError(
                    f"Table {table} has no column {column!r} (it has: {', '.join(sorted(present))})"
                )
