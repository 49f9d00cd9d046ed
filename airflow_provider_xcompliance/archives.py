"""One description of the user's archive, used by every step: export, apply, lineage, reports.

An archive is where the user keeps X content: tweets (and often users) in SQL tables, or in JSON
Lines / Parquet data sets in object storage. Every field but the location and the ID column is
optional. Names are checked when the description is made (plain SQL identifiers, known formats),
so a typo fails when the DAG is parsed; whether the tables and columns exist is checked before
anything is read or changed.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from airflow_provider_xcompliance.apply.sql_tables import SqlTarget, sql_name
from airflow_provider_xcompliance.exceptions import ApplyConfigError

FILE_FORMATS = ("jsonl", "parquet")


def _names(mapping: Mapping[str, str] | None, what: str) -> dict[str, str]:
    """``{table: column}`` of dependent records, each name checked."""
    checked: dict[str, str] = {}
    for table, column in (mapping or {}).items():
        checked[sql_name(table, f"{what} table")] = sql_name(column, f"{what} column of {table}")
    return checked


@dataclass(frozen=True)
class SqlArchive:
    """Tweets (and users) in SQL tables, reached through any common.sql connection.

    :param conn_id: a connection whose hook is a common.sql ``DbApiHook`` (PostgreSQL, SQLite, ...).
    :param table: the tweets table; ``id_column`` holds each tweet's ID.
    :param author_id_column: the tweet's author's user ID (a users job's results reach the tweets
        through it, and its distinct values are the users job's IDs).
    :param geo_columns: the columns ``scrub_geo`` sets to NULL.
    :param edit_root_column: the ID of the first tweet of an edit chain
        (``edit_history_tweet_ids[0]``), the same for every stored version.
    :param users_table: the users table, ``users_id_column`` holding each user's ID.
    :param dependents: ``{table: column}`` of rows that reference a tweet (media, URLs, ...).
    :param user_dependents: ``{table: column}`` of rows that reference a user.
    :param geo_dependents: ``{table: column}`` of rows that are a tweet's geo data.
    :param audit_table: where audit rows go (created if missing); None writes no audit.
    """

    conn_id: str
    table: str
    id_column: str = "id"
    author_id_column: str | None = None
    geo_columns: tuple[str, ...] = ()
    edit_root_column: str | None = None
    users_table: str | None = None
    users_id_column: str = "id"
    dependents: Mapping[str, str] = field(default_factory=dict)
    user_dependents: Mapping[str, str] = field(default_factory=dict)
    geo_dependents: Mapping[str, str] = field(default_factory=dict)
    audit_table: str | None = None

    def __post_init__(self) -> None:
        if not isinstance(self.conn_id, str) or not self.conn_id:
            raise ApplyConfigError("SqlArchive needs conn_id, the connection of the archive's database")
        sql_name(self.table, "table")
        sql_name(self.id_column, "id_column")
        object.__setattr__(self, "geo_columns", tuple(self.geo_columns))
        for column in self.geo_columns:
            sql_name(column, "geo column")
        for name in ("author_id_column", "edit_root_column", "users_table", "audit_table"):
            if getattr(self, name) is not None:
                sql_name(getattr(self, name), name)
        sql_name(self.users_id_column, "users_id_column")
        object.__setattr__(self, "dependents", _names(self.dependents, "dependents"))
        object.__setattr__(self, "user_dependents", _names(self.user_dependents, "user_dependents"))
        object.__setattr__(self, "geo_dependents", _names(self.geo_dependents, "geo_dependents"))

    @property
    def name(self) -> str:
        """How reports and the UI name the archive."""
        return f"{self.conn_id}:{self.table}"

    def target(self, job_type: str) -> SqlTarget:
        """The tables an apply run of ``job_type`` changes, as the SQL applier takes them (a
        tweets job matches tweets by their own ID, so the author column is not its business)."""
        return SqlTarget(
            table=self.table,
            id_column=self.id_column,
            author_id_column=self.author_id_column if job_type == "users" else None,
            geo_columns=self.geo_columns,
            users_table=self.users_table,
            users_id_column=self.users_id_column,
            audit_table=self.audit_table,
            edit_root_column=self.edit_root_column,
            dependents=tuple(self.dependents.items()),
            user_dependents=tuple(self.user_dependents.items()),
            geo_dependents=tuple(self.geo_dependents.items()),
        )

    def id_columns(self, job_type: str) -> list[tuple[str, str]]:
        """``(table, column)`` of every stored ID a job type checks: a tweets job the tweets
        (every stored version, and each chain's first ID), a users job the tweets' authors and
        the users table's users."""
        columns: list[tuple[str, str]] = []
        if job_type == "tweets":
            columns.append((self.table, self.id_column))
            if self.edit_root_column:
                columns.append((self.table, self.edit_root_column))
            return columns
        if self.author_id_column:
            columns.append((self.table, self.author_id_column))
        if self.users_table:
            columns.append((self.users_table, self.users_id_column))
        if not columns:
            raise ApplyConfigError(
                f"Archive {self.name} holds no user IDs: give it author_id_column or users_table"
            )
        return columns


@dataclass(frozen=True)
class FileArchive:
    """Tweets as a JSON Lines or Parquet data set in any object store (``ObjectStoragePath``).

    :param data_path: a folder or one object, any path or object-storage URL.
    :param format: ``jsonl`` or ``parquet``.
    :param id_field: each record's tweet ID.
    :param author_id_field: the tweet's author's user ID.
    :param geo_fields: the fields ``scrub_geo`` sets to null.
    :param edit_history_field: the list of a chain's tweet IDs that X's API returns on each tweet
        (``edit_history_tweet_ids``).
    :param partition_template: how records are laid out in folders, e.g.
        ``date={created_at:%Y-%m-%d}``, so that only the folders needed are read.
    :param audit_path: a folder for the audit objects; None writes no audit.
    """

    data_path: Any
    format: str = "jsonl"
    id_field: str = "id"
    author_id_field: str | None = None
    geo_fields: tuple[str, ...] = ()
    edit_history_field: str | None = None
    partition_template: str | None = None
    audit_path: Any = None

    def __post_init__(self) -> None:
        if not self.data_path:
            raise ApplyConfigError("FileArchive needs data_path, the data set's folder or object")
        if self.format not in FILE_FORMATS:
            raise ApplyConfigError(f"format must be one of {', '.join(FILE_FORMATS)}, not {self.format!r}")
        object.__setattr__(self, "geo_fields", tuple(self.geo_fields))
        for name in ("id_field", "author_id_field", "edit_history_field"):
            value = getattr(self, name)
            if value is not None and (not isinstance(value, str) or not value):
                raise ApplyConfigError(f"{name} must be a field name, not {value!r}")

    @property
    def name(self) -> str:
        return str(self.data_path)

    def id_fields(self, job_type: str) -> list[str]:
        """The fields whose values a job type checks: a tweets job the tweet IDs (and the edit
        history's), a users job the authors."""
        if job_type == "tweets":
            return [self.id_field, *([self.edit_history_field] if self.edit_history_field else [])]
        if not self.author_id_field:
            raise ApplyConfigError(f"Archive {self.name} holds no user IDs: give it author_id_field")
        return [self.author_id_field]


Archive = SqlArchive | FileArchive


def checked_archive(archive: object, job_type: str) -> Archive:
    """``archive`` as given to an operator: one of the two kinds, holding IDs of ``job_type`` (so
    that a users job over an archive without authors fails when the DAG is parsed)."""
    if isinstance(archive, SqlArchive):
        archive.id_columns(job_type)
    elif isinstance(archive, FileArchive):
        archive.id_fields(job_type)
    else:
        raise ApplyConfigError(f"archive must be a SqlArchive or a FileArchive, not {type(archive).__name__}")
    return archive
