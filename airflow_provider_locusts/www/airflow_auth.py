"""Who may see a swarm: Airflow's own authentication and authorization, for the Swarm view.

Airflow does not protect the FastAPI apps that plugins mount, and offers plugins no public API
for it: this module uses the api-server's internals (airflow.api_fastapi.core_api.security,
Airflow 3.1 to 3.3), kept here alone so a change in Airflow touches one file.

- `get_user` reads the caller's JWT from `Authorization: Bearer` or from the `_token` cookie
  the UI's login sets (the Swarm tab's iframe is same-origin, so the browser sends it): no
  token → 401, an expired one → 401, a forged one → 403.
- The configured auth manager (SimpleAuthManager, FAB, Keycloak…) then decides whether that
  user may read this DAG's task instances (`is_authorized_dag`, the check Airflow's own
  `GET …/taskInstances/{task_id}` makes): no → 403.
Airflow's `requires_access_dag` reads the dag id from the raw request and treats a missing or
"~" id as "list DAGs", which nearly every user may do; here the dag id is the endpoint's own
validated parameter, never empty, so the check is always about that one DAG.
"""

from __future__ import annotations

from airflow.api_fastapi.app import get_auth_manager
from airflow.api_fastapi.auth.managers.models.base_user import BaseUser
from airflow.api_fastapi.auth.managers.models.resource_details import (
    DagAccessEntity,
    DagDetails,
)
from airflow.api_fastapi.core_api.security import GetUserDep, get_user
from airflow.models.dag import DagModel
from fastapi import HTTPException, status

__all__ = ["TASK_INSTANCE", "TASK_LOGS", "BaseUser", "GetUserDep", "authorize_dag_read", "get_user", "login_url"]

# What a route reads of a DAG: its task instances (the view, the task table), or its task logs
# (log tails: the permission Airflow's own log endpoint checks).
TASK_INSTANCE = DagAccessEntity.TASK_INSTANCE
TASK_LOGS = DagAccessEntity.TASK_LOGS


def authorize_dag_read(user: BaseUser, dag_id: str, entity: DagAccessEntity = TASK_INSTANCE) -> None:
    """403 unless `user` may read `entity` (task instances by default; task logs for log
    tails) of the DAG `dag_id`, as Airflow's configured auth manager decides."""
    if not dag_id or dag_id == "~":
        raise HTTPException(status.HTTP_403_FORBIDDEN, "Forbidden")
    details = DagDetails(id=dag_id, team_name=DagModel.get_team_name(dag_id))
    if not get_auth_manager().is_authorized_dag(method="GET", access_entity=entity, details=details, user=user):
        raise HTTPException(status.HTTP_403_FORBIDDEN, "Forbidden")


def login_url(next_url: str) -> str:
    """The auth manager's login page, coming back to `next_url` after login."""
    return get_auth_manager().get_url_login(next_url=next_url)
