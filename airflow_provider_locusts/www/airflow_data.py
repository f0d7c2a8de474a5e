"""What the Swarm view reads from Airflow's metadata database: the task instance, and the
swarm handle the operator records for it as the XCom `locusts_swarm`.

Read in the api-server through Airflow's models (internals of airflow-core 3.x, kept here alone),
straight from the database like Airflow's own XCom endpoint does: no custom XCom backend runs."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from airflow.models.taskinstance import TaskInstance
from airflow.models.xcom import XComModel
from sqlalchemy import select
from sqlalchemy.orm import Session

HANDLE_XCOM_KEY = "locusts_swarm"


@dataclass(frozen=True)
class TaskInstanceKey:
    dag_id: str
    run_id: str
    task_id: str
    map_index: int = -1


@dataclass(frozen=True)
class TaskInstanceInfo:
    key: TaskInstanceKey
    state: str | None
    try_number: int
    operator: str | None
    handle: Any  # the recorded swarm handle, None when the operator has not recorded one


def read_task_instance(session: Session, key: TaskInstanceKey) -> TaskInstanceInfo | None:
    """The task instance and its swarm handle; None when there is no such task instance."""
    ti = session.scalar(
        select(TaskInstance).where(
            TaskInstance.dag_id == key.dag_id,
            TaskInstance.run_id == key.run_id,
            TaskInstance.task_id == key.task_id,
            TaskInstance.map_index == key.map_index,
        )
    )
    if ti is None:
        return None
    row = session.scalars(
        XComModel.get_many(
            run_id=key.run_id, key=HANDLE_XCOM_KEY, task_ids=key.task_id, dag_ids=key.dag_id,
            map_indexes=key.map_index, limit=1,
        )
    ).first()
    handle = XComModel.deserialize_value(row) if row is not None else None
    return TaskInstanceInfo(
        key=key,
        state=getattr(ti.state, "value", ti.state),
        try_number=ti.try_number,
        operator=ti.operator,
        handle=handle,
    )
