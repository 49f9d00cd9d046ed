"""Step 5: apply a job's results to the user's own data (SQL tables, JSONL/Parquet data sets).

The rules by reason are in :mod:`airflow_provider_xcompliance.apply.rules`; these operators add the
Airflow side: templated paths, the audit key from a Variable, the report as XCom and as the
extra of an Asset event.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any, cast

from airflow.sdk import Asset, BaseHook, BaseOperator, Variable

from airflow_provider_xcompliance.apply.audit import DEFAULT_AUDIT_KEY_VARIABLE, AuditIdentity
from airflow_provider_xcompliance.apply.handoff import (
    ResultsToApply,
    check_results_job_type,
    results_to_apply,
)
from airflow_provider_xcompliance.apply.rules import ChangeRules
from airflow_provider_xcompliance.archives import FileArchive, SqlArchive, checked_archive
from airflow_provider_xcompliance.exceptions import ApplyConfigError
from airflow_provider_xcompliance.reports import ApplyReport

if TYPE_CHECKING:
    from airflow.providers.openlineage.extractors import OperatorLineage
    from airflow.sdk import Context
    from pydantic import JsonValue

    from airflow_provider_xcompliance.apply.sql_tables import SqlTarget


class _ApplyOperator(BaseOperator):
    """What both apply operators share: the rules, the audit identity, the report's Asset."""

    ui_color = "#e8fde9"
    # The templated parameter (True/False, or the text a template renders to) hides
    # BaseOperator.dry_run(), a render-only method that Airflow 3 itself never calls.
    dry_run: bool | str  # type: ignore[assignment]

    def __init__(
        self,
        *,
        job_type: str,
        results_path: Any = None,
        results: Any = None,
        job_id: str | None = None,
        x_conn_id: str | None = None,
        overrides: Mapping[str, str] | None = None,
        audit_ids: str = "hmac",
        audit_key_variable: str = DEFAULT_AUDIT_KEY_VARIABLE,
        max_delete_fraction: float | None = None,
        dry_run: bool = False,
        asset: Asset | None = None,
        **kwargs: Any,
    ) -> None:
        self.asset = asset
        if asset is not None:
            outlets = kwargs.get("outlets") or []
            kwargs["outlets"] = [*(outlets if isinstance(outlets, (list, tuple)) else [outlets]), asset]
        super().__init__(**kwargs)
        if (results is None) == (results_path is None):
            raise ApplyConfigError(
                f"{self.task_id}: give the results as results= (a download's summary, e.g. "
                "download.output) or results_path=, one of them"
            )
        self.results_path = results_path
        self.results = results
        self.job_type = job_type
        self.job_id = job_id
        self.x_conn_id = x_conn_id
        self.overrides = dict(overrides or {})
        self.audit_ids = audit_ids
        self.audit_key_variable = audit_key_variable
        self.max_delete_fraction = max_delete_fraction
        self.dry_run = dry_run
        ChangeRules(job_type, self.overrides)  # bad rules fail when the DAG is parsed

    def _dry_run(self) -> bool:
        """``dry_run`` may be a template (a Param): its rendering is text unless the DAG renders
        native objects."""
        if isinstance(self.dry_run, str):
            return self.dry_run.strip().lower() in ("true", "1", "yes", "on")
        return bool(self.dry_run)

    def _results_to_apply(self) -> ResultsToApply:
        """The results file and its job, refused (before anything is read) when they are of
        another job type than this task applies: by the download's summary, or by X's job when
        ``x_conn_id`` is given and only the job id is known."""
        results = results_to_apply(self.results, self.results_path, self.job_id)
        check_results_job_type(results, self.job_type)
        if results.job_type is None and results.job_id and self.x_conn_id:
            from airflow_provider_xcompliance.hooks.compliance import XComplianceHook

            job = XComplianceHook(x_conn_id=self.x_conn_id).get_job(results.job_id)
            checked = ResultsToApply(results.path, results.job_id, job.type)
            check_results_job_type(checked, self.job_type, f"X's job {job.id}")
        return results

    def _results_location(self) -> Any:
        """The results file for lineage (after rendering, ``results`` is the summary)."""
        if isinstance(self.results, Mapping):
            return self.results.get("path")
        return self.results_path

    def _rules(self) -> ChangeRules:
        return ChangeRules(self.job_type, self.overrides)

    def _audit_identity(self, audited: bool) -> AuditIdentity | None:
        """The audit's way of naming records; the HMAC key is read from a Variable (so it can
        live in a secrets backend), and its absence fails the task before any change."""
        if not audited:
            return None
        key = None
        if self.audit_ids == "hmac":
            value = Variable.get(self.audit_key_variable, default=None)
            key = value.encode() if value else None
            if not key and self.audit_key_variable != DEFAULT_AUDIT_KEY_VARIABLE:
                raise ApplyConfigError(
                    f"audit_ids='hmac' needs a key: the Airflow Variable {self.audit_key_variable!r} "
                    "(audit_key_variable) is not set"
                )
        return AuditIdentity(self.audit_ids, key)

    def _apply_to_sql(
        self, context: Context, conn_id: str, target: SqlTarget, batch_size: int
    ) -> ApplyReport:
        """Apply the results to ``target`` over one connection of ``conn_id``, in one transaction."""
        from airflow_provider_xcompliance.apply.sql import SqlApplier

        results = self._results_to_apply()
        audit = self._audit_identity(bool(target.audit_table))
        hook = BaseHook.get_connection(conn_id).get_hook()
        if not hasattr(hook, "get_conn") or not hasattr(hook, "placeholder"):
            raise ApplyConfigError(f"Connection {conn_id!r} is not a SQL (common.sql DbApiHook) connection")
        conn = hook.get_conn()  # one connection for the whole run: the TEMP tables live in it
        try:
            report = SqlApplier(
                conn,
                hook.placeholder,
                self._rules(),
                target,
                audit=audit,
                job_id=results.job_id,
                run_id=context.get("run_id"),
                max_delete_fraction=self.max_delete_fraction,
                dry_run=self._dry_run(),
                batch_size=batch_size,
                log=self.log,
            ).run(results.path)
        finally:
            conn.close()
        return self._publish(context, report)

    def _apply_to_files(self, context: Context, archive: FileArchive) -> ApplyReport:
        """Apply the results to a data set, one atomic object at a time."""
        from airflow_provider_xcompliance.apply.files import apply_to_files

        results = self._results_to_apply()
        report = apply_to_files(
            results.path,
            self._rules(),
            archive.data_path,
            format=archive.format,
            id_field=archive.id_field,
            author_id_field=archive.author_id_field,
            geo_fields=archive.geo_fields,
            partition_template=archive.partition_template,
            audit=self._audit_identity(archive.audit_path is not None),
            audit_path=archive.audit_path,
            job_id=results.job_id,
            run_id=context.get("run_id"),
            max_delete_fraction=self.max_delete_fraction,
            dry_run=self._dry_run(),
            log=self.log,
        )
        return self._publish(context, report)

    def _sql_lineage(self, conn_id: str, target: SqlTarget) -> OperatorLineage:
        from airflow_provider_xcompliance.utils.openlineage import (
            operator_lineage,
            table_datasets,
            to_dataset,
        )

        outputs = []
        if not self._dry_run():
            tables = [change.table for change in target.changes(self.job_type)]
            if target.audit_table:
                tables.append(target.audit_table)
            outputs = table_datasets(BaseHook.get_connection(conn_id).get_hook(), tables)
        return operator_lineage([to_dataset(self._results_location())], outputs)

    def _files_lineage(self, data_path: Any, audit_path: Any) -> OperatorLineage:
        from airflow_provider_xcompliance.utils.openlineage import operator_lineage, to_dataset

        outputs = []
        if not self._dry_run():
            outputs = [to_dataset(data_path)]
            if audit_path is not None:
                outputs.append(to_dataset(audit_path))
        return operator_lineage([to_dataset(self._results_location())], outputs)

    def _publish(self, context: Context, report: ApplyReport) -> ApplyReport:
        self.log.info(
            "%s %s: deleted %s, geo removed %s, kept %s (%s result lines, %.1f s)",
            "Dry run over" if report["dry_run"] else "Applied to",
            report["target"],
            report["deleted"] or 0,
            report["updated"] or 0,
            report["kept"] or 0,
            report["result_lines"],
            report["seconds"],
        )
        if self.asset is not None:
            # A report holds JSON values only, which mypy cannot read from its TypedDict.
            context["outlet_events"][self.asset].extra = cast("dict[str, JsonValue]", dict(report))
        return report


class XComplianceApplyToSqlOperator(_ApplyOperator):
    """Apply results to SQL tables through any common.sql connection, in one transaction.

    tweets jobs delete the flagged tweets from ``table`` (matched by ``id_column``) and set
    ``geo_columns`` to NULL for ``scrub_geo``; users jobs delete the flagged users' tweets from
    ``table`` (matched by ``author_id_column``; without one, ``table`` holds the users) and the
    users from ``users_table``. A second run over the same results changes nothing.

    :param results: the download's summary (``download.output``: its ``path``, ``job_id`` and
        ``job_type``; a plain dict with those keys works too). Results of another job type than
        ``job_type`` are refused before anything changes.
    :param results_path: instead of ``results``, the results file, a path or any object-storage
        URL (templated).
    :param x_conn_id: with only a job id known (``results_path`` and ``job_id``), the X
        connection to ask for the job's type, refused likewise; None does not ask.
    :param job_type: ``tweets`` or ``users``.
    :param conn_id: a connection whose hook is a common.sql ``DbApiHook`` (PostgreSQL, SQLite, ...).
    :param table: the table to change (templated).
    :param audit_table: where audit rows go (created if missing); None writes no audit.
    :param audit_ids: how audit rows name a record: ``hmac`` (keyed by the Variable
        ``audit_key_variable``), ``plain`` or ``none``.
    :param overrides: per-reason changes, e.g. ``{"protected": "keep"}``.
    :param max_delete_fraction: refuse (and change nothing) if a table would lose more than this
        fraction of its rows.
    :param dry_run: report what would change, and change nothing (templated).
    :param batch_size: result rows sent to the database at a time.
    :param job_id: the job, for the audit (templated).
    """

    template_fields: Sequence[str] = (
        "results_path",
        "results",
        "job_id",
        "conn_id",
        "table",
        "users_table",
        "audit_table",
        "dry_run",
    )

    def __init__(
        self,
        *,
        conn_id: str,
        table: str,
        id_column: str = "id",
        author_id_column: str | None = None,
        geo_columns: Sequence[str] = (),
        users_table: str | None = None,
        users_id_column: str = "id",
        audit_table: str | None = None,
        batch_size: int = 10_000,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.conn_id = conn_id
        self.table = table
        self.id_column = id_column
        self.author_id_column = author_id_column
        self.geo_columns = tuple(geo_columns)
        self.users_table = users_table
        self.users_id_column = users_id_column
        self.audit_table = audit_table
        self.batch_size = batch_size

    def _target(self) -> SqlTarget:
        from airflow_provider_xcompliance.apply.sql_tables import SqlTarget

        return SqlTarget(
            table=self.table,
            id_column=self.id_column,
            author_id_column=self.author_id_column,
            geo_columns=self.geo_columns,
            users_table=self.users_table,
            users_id_column=self.users_id_column,
            audit_table=self.audit_table,
        )

    def execute(self, context: Context) -> ApplyReport:
        return self._apply_to_sql(context, self.conn_id, self._target(), self.batch_size)

    def get_openlineage_facets_on_complete(self, task_instance: Any) -> OperatorLineage:
        """Input: the results file. Outputs: the tables the job type changes (``table``, and
        ``users_table`` for users jobs) and ``audit_table``, named from the connection by its
        hook's OpenLineage helpers; none for a dry run, which changes nothing."""
        return self._sql_lineage(self.conn_id, self._target())


class XComplianceApplyToFilesOperator(_ApplyOperator):
    """Apply results to a JSON Lines or Parquet data set in any object store.

    Only the objects that hold flagged records are rewritten, each atomically; untouched JSONL
    lines stay byte-identical and Parquet keeps its schema. With a ``partition_template`` such as
    ``date={created_at:%Y-%m-%d}``, a tweets job reads only the partitions that can hold a
    flagged tweet.

    :param data_path: a folder or an object, any path or object-storage URL (templated).
    :param format: ``jsonl`` or ``parquet``.
    :param audit_path: a folder for the audit object (one JSON Lines object per run); None
        writes no audit.

    The other parameters are those of :class:`XComplianceApplyToSqlOperator`, with ``_field``
    for ``_column``.
    """

    template_fields: Sequence[str] = (
        "results_path",
        "results",
        "job_id",
        "data_path",
        "audit_path",
        "dry_run",
    )

    def __init__(
        self,
        *,
        data_path: Any,
        format: str = "jsonl",
        id_field: str = "id",
        author_id_field: str | None = None,
        geo_fields: Sequence[str] = (),
        partition_template: str | None = None,
        audit_path: Any = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        if format not in ("jsonl", "parquet"):
            raise ApplyConfigError(f"format must be 'jsonl' or 'parquet', not {format!r}")
        self.data_path = data_path
        self.format = format
        self.id_field = id_field
        self.author_id_field = author_id_field
        self.geo_fields = tuple(geo_fields)
        self.partition_template = partition_template
        self.audit_path = audit_path

    def execute(self, context: Context) -> ApplyReport:
        return self._apply_to_files(
            context,
            FileArchive(
                data_path=self.data_path,
                format=self.format,
                id_field=self.id_field,
                author_id_field=self.author_id_field,
                geo_fields=self.geo_fields,
                partition_template=self.partition_template,
                audit_path=self.audit_path,
            ),
        )

    def get_openlineage_facets_on_complete(self, task_instance: Any) -> OperatorLineage:
        """Input: the results file. Outputs: the data set (``data_path``, a folder or one object)
        and the ``audit_path`` folder; none for a dry run, which writes nothing."""
        return self._files_lineage(self.data_path, self.audit_path)


class XComplianceApplyOperator(_ApplyOperator):
    """Apply results to an archive of any kind, as its description says (one operator for every
    archive kind; the SQL and files operators are its two halves with their own arguments).

    A :class:`~airflow_provider_xcompliance.archives.SqlArchive` is changed in one transaction:
    beyond the rules by reason, a delete of any version of an edited tweet deletes every stored
    version of its chain and a ``scrub_geo`` of one scrubs all (``edit_root_column``); the rows of
    ``dependents`` go with the tweet they reference, those of ``geo_dependents`` also on
    ``scrub_geo``, those of ``user_dependents`` with the user, and a user's tweets' dependents with
    the user's tweets; one audit row per record changed, dependents included (target named); the
    guard counts what the run would delete in each table. A
    :class:`~airflow_provider_xcompliance.archives.FileArchive` is applied as
    :class:`XComplianceApplyToFilesOperator` applies a data set.

    :param archive: the archive's description.
    :param batch_size: result rows sent to a database at a time.

    The other parameters are those of :class:`XComplianceApplyToSqlOperator`.
    """

    template_fields: Sequence[str] = ("results_path", "results", "job_id", "dry_run")

    def __init__(self, *, archive: SqlArchive | FileArchive, batch_size: int = 10_000, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        archive = checked_archive(archive, self.job_type)
        if isinstance(archive, FileArchive) and archive.edit_history_field:
            raise ApplyConfigError(
                "FileArchive(edit_history_field=...) is exported, but applying edit chains to data sets "
                "is not supported yet: leave edit_history_field out of the archive given to apply"
            )
        self.archive = archive
        self.batch_size = batch_size

    def execute(self, context: Context) -> ApplyReport:
        if isinstance(self.archive, SqlArchive):
            return self._apply_to_sql(
                context, self.archive.conn_id, self.archive.target(self.job_type), self.batch_size
            )
        return self._apply_to_files(context, self.archive)

    def get_openlineage_facets_on_complete(self, task_instance: Any) -> OperatorLineage:
        """Input: the results file. Outputs: the tables or the data set it changes, and the audit."""
        if isinstance(self.archive, SqlArchive):
            return self._sql_lineage(self.archive.conn_id, self.archive.target(self.job_type))
        return self._files_lineage(self.archive.data_path, self.archive.audit_path)
