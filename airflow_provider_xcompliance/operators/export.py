"""Step 2: export the IDs an archive holds as an ID file, ready for upload."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from airflow.sdk import BaseHook, BaseOperator

from airflow_provider_xcompliance.archives import FileArchive, SqlArchive, checked_archive
from airflow_provider_xcompliance.client.codec import check_job_type
from airflow_provider_xcompliance.exceptions import ApplyConfigError
from airflow_provider_xcompliance.reports import ExportReport

if TYPE_CHECKING:
    from airflow.providers.openlineage.extractors import OperatorLineage
    from airflow.sdk import Context


class XComplianceExportIdsOperator(BaseOperator):
    """Write the IDs an archive holds for one job type as a canonical ID file (one ID per line),
    streaming, to any object store; the file appears complete or not at all.

    tweets: every stored tweet ID (every version of an edit chain, and each chain's first ID);
    users: the distinct authors of the stored tweets and the users of the users table. A stored
    value that is not an X ID fails the task, naming the table or object, the row or line, and
    the value. The report (XCom) gives the counts, bytes and seconds.

    :param archive: a :class:`~airflow_provider_xcompliance.archives.SqlArchive` or
        :class:`~airflow_provider_xcompliance.archives.FileArchive`.
    :param job_type: ``tweets`` or ``users``.
    :param ids_path: where the ID file goes, any path or object-storage URL (templated).
    :param batch_size: rows fetched at a time from databases without ``COPY``.
    """

    template_fields: Sequence[str] = ("ids_path",)
    ui_color = "#e8f4fd"

    def __init__(
        self,
        *,
        archive: SqlArchive | FileArchive,
        job_type: str,
        ids_path: Any,
        batch_size: int = 50_000,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        check_job_type(job_type)
        self.archive = checked_archive(archive, job_type)
        self.job_type = job_type
        self.ids_path = ids_path
        self.batch_size = batch_size

    def execute(self, context: Context) -> ExportReport:
        if isinstance(self.archive, SqlArchive):
            from airflow_provider_xcompliance.export.sql import export_sql_ids

            hook = BaseHook.get_connection(self.archive.conn_id).get_hook()
            if not hasattr(hook, "get_conn"):
                raise ApplyConfigError(
                    f"Connection {self.archive.conn_id!r} is not a SQL (common.sql DbApiHook) connection"
                )
            conn = hook.get_conn()
            try:
                report = export_sql_ids(
                    conn, self.archive, self.job_type, self.ids_path, batch_size=self.batch_size
                )
            finally:
                conn.close()
        else:
            from airflow_provider_xcompliance.export.files import export_file_ids

            report = export_file_ids(self.archive, self.job_type, self.ids_path, self.log)
        self.log.info(
            "Exported %s %s IDs of %s to %s (%s bytes, %.1f s)",
            f"{report['ids']:,}",
            self.job_type,
            report["archive"],
            report["path"],
            f"{report['bytes']:,}",
            report["seconds"],
        )
        return report

    def get_openlineage_facets_on_complete(self, task_instance: Any) -> OperatorLineage:
        """Inputs: the archive's tables or data set. Output: the ID file."""
        from airflow_provider_xcompliance.utils.openlineage import (
            operator_lineage,
            table_datasets,
            to_dataset,
        )

        if isinstance(self.archive, SqlArchive):
            tables = sorted({table for table, _ in self.archive.id_columns(self.job_type)})
            inputs = table_datasets(BaseHook.get_connection(self.archive.conn_id).get_hook(), tables)
        else:
            inputs = [to_dataset(self.archive.data_path)]
        return operator_lineage(inputs, [to_dataset(self.ids_path)])
