"""OpenLineage names for what the operators read and write: one place for the naming rules.

Only the operators' ``get_openlineage_facets_on_complete`` call these, and only OpenLineage
calls those, so OpenLineage (``apache-airflow-providers-openlineage``) stays optional: its
classes are imported inside the functions.

Names follow the OpenLineage naming spec: an object in a bucket is namespace
``<scheme>://<bucket>`` and name ``<key>`` (``s3``, ``gs``, ...); a local file is namespace
``file`` and name its absolute path; a SQL table is namespace ``<scheme>://<host>:<port>`` and
name ``<database>.<schema>.<table>`` as the connection's hook gives them (SQLite, which the spec
does not cover, is namespace ``sqlite://<absolute path of the database file>`` and name
``<schema>.<table>``, ``main`` unless the table names another). The connection id of a URL
(``s3://aws_default@bucket/key``) is no part of a name.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from airflow_provider_xcompliance.object_storage import LOCAL_PROTOCOLS, Location

if TYPE_CHECKING:
    from airflow.providers.common.compat.openlineage.facet import Dataset
    from airflow.providers.openlineage.extractors import OperatorLineage

# Other spellings of a scheme, as the naming spec writes it.
_SCHEMES = {"s3a": "s3", "s3n": "s3", "gcs": "gs"}
JOBS_NAMESPACE_SCHEME = "x-compliance"


def dataset_name(location: Location) -> tuple[str, str]:
    """``(namespace, name)`` of a local path, a URL or an ``ObjectStoragePath``.

    >>> dataset_name("s3://aws_default@bucket/results/tweets-1.jsonl")
    ('s3://bucket', 'results/tweets-1.jsonl')
    >>> dataset_name("file:///data/ids.txt")
    ('file', '/data/ids.txt')

    A folder is named without its trailing ``/``; a bucket's root is ``/``.
    """
    text = str(location) if not isinstance(location, (str, os.PathLike)) else os.fspath(location)
    if "://" not in text:  # a local path, as storage.to_path reads it
        return "file", os.path.abspath(os.path.expanduser(text))
    url = urlsplit(text)
    scheme = url.scheme.lower()
    if scheme in LOCAL_PROTOCOLS:
        return "file", os.path.abspath(url.path or "/")
    bucket = url.netloc.rpartition("@")[2]  # no connection id (``conn@bucket``) in a name
    name = url.path.strip("/") or "/"
    return f"{_SCHEMES.get(scheme, scheme)}://{bucket}", name


def to_dataset(location: Location) -> Dataset:
    """The OpenLineage ``Dataset`` of a local path, a URL or an ``ObjectStoragePath``."""
    from airflow.providers.common.compat.openlineage.facet import Dataset

    namespace, name = dataset_name(location)
    return Dataset(namespace=namespace, name=name)


def job_dataset(api_base_url: str, job_type: str) -> Dataset:
    """The compliance jobs of one type at one X API, as a data set: what the IDs go into and
    the results come out of. Namespace ``x-compliance://<API host>``, name ``jobs/<job type>``
    (one per type, not per job, so that the lineage of successive runs joins up)."""
    from airflow.providers.common.compat.openlineage.facet import Dataset

    authority = urlsplit(api_base_url).netloc.rpartition("@")[2] if "://" in api_base_url else api_base_url
    return Dataset(namespace=f"{JOBS_NAMESPACE_SCHEME}://{authority}", name=f"jobs/{job_type}")


def operator_lineage(inputs: Iterable[Dataset] = (), outputs: Iterable[Dataset] = ()) -> OperatorLineage:
    from airflow.providers.openlineage.extractors import OperatorLineage

    return OperatorLineage(inputs=list(inputs), outputs=list(outputs))


# --- SQL tables ---------------------------------------------------------------------------------


def table_datasets(hook: Any, tables: Iterable[str]) -> list[Dataset]:
    """The Datasets of ``tables`` (``table`` or ``schema.table``) behind a common.sql hook.

    The namespace and database come from the hook's own OpenLineage helpers
    (``get_openlineage_database_info``, ``get_openlineage_default_schema``), as common.sql's
    operators use them; SQLite's hook has none, and gets the rule in this module's docstring.
    Hooks with neither get ``<conn type>://<host>:<port>`` and the hook's default schema.
    """
    from airflow.providers.common.compat.openlineage.facet import Dataset

    namespace, database, default_schema = _sql_naming(hook)
    datasets: list[Dataset] = []
    for table in dict.fromkeys(tables):  # each once, in order
        schema, _, bare = table.rpartition(".")
        parts = [database, schema or default_schema(), bare]
        datasets.append(Dataset(namespace=namespace, name=".".join(p for p in parts if p)))
    return datasets


def _sql_naming(hook: Any) -> tuple[str, str | None, Callable[[], str | None]]:
    """``(namespace, database, default schema)`` of a common.sql hook's connection; the default
    schema is asked for only when a table names none (PostgreSQL's hook asks the server)."""
    connection = hook.get_connection(getattr(hook, hook.conn_name_attr))
    if _is_sqlite(hook, connection):
        return f"sqlite://{_sqlite_file(hook)}", None, lambda: "main"
    info = None
    try:
        info = hook.get_openlineage_database_info(connection)
    except (AttributeError, NotImplementedError, ImportError):
        pass
    if info is not None:
        from airflow.providers.openlineage.sqlparser import SQLParser

        return SQLParser.create_namespace(info), info.database, hook.get_openlineage_default_schema
    from airflow.providers.common.sql.hooks.sql import DbApiHook

    authority = DbApiHook.get_openlineage_authority_part(connection)
    namespace = f"{connection.conn_type}://{authority}"
    return namespace, connection.schema or None, hook.get_openlineage_default_schema


def _is_sqlite(hook: Any, connection: Any) -> bool:
    return connection.conn_type == "sqlite" or type(hook).__name__ == "SqliteHook"


def _sqlite_file(hook: Any) -> str:
    """The database file's absolute path, from the SQLAlchemy URI the sqlite hook builds
    (``sqlite:////abs/path.db?mode=ro``)."""
    uri = hook.get_uri()
    path = uri.split("://", 1)[1].split("?", 1)[0]
    path = path[1:] if path.startswith("/") else path  # sqlite:/// + path
    return path if path == ":memory:" or not path else os.path.abspath(path)
