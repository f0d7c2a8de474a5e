"""The operator extra link "Swarm": from the task instance's page in Airflow to its Swarm view.

Airflow 3 computes extra links in the worker when a try's run ends (also when it defers) and
stores them as XComs; the api-server shows what was stored."""

from __future__ import annotations

from typing import TYPE_CHECKING

from airflow.sdk import BaseOperatorLink

from airflow_provider_locusts.www.urls import swarm_page_url

if TYPE_CHECKING:
    from airflow.sdk import BaseOperator
    from airflow.sdk.definitions.taskinstancekey import TaskInstanceKey


def _api_base_url() -> str:
    try:
        from airflow.sdk.configuration import conf
    except ImportError:  # Airflow 3.1 task SDK
        from airflow.configuration import conf
    return conf.get("api", "base_url", fallback="/")


class SwarmLink(BaseOperatorLink):
    """Opens the Swarm view of this task instance."""

    name = "Swarm"

    def get_link(self, operator: BaseOperator, *, ti_key: TaskInstanceKey) -> str:
        return swarm_page_url(_api_base_url(), ti_key.dag_id, ti_key.run_id, ti_key.task_id, ti_key.map_index)
