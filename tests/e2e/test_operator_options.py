"""Operator options that cannot work are refused with one message saying what to fix,
before anything is staged: checked through the operator's own validation."""

from __future__ import annotations

from datetime import datetime

import pytest

from airflow_provider_locusts.operators.swarm import LocustsSwarmOperator
from airflow_provider_locusts.swarm.command import SwarmSpecError

from .conftest import raised


def operator(tmp_path, **kwargs) -> LocustsSwarmOperator:
    settings = dict(task_id="swarm", command="echo <arg0> > o_<id>", args=[[1]], outputs=["o_<id>"], output_dir=str(tmp_path / "out"))
    settings.update(kwargs)
    return LocustsSwarmOperator(**settings)


@pytest.mark.parametrize("remote_root", ["/", "//", "~", "~/swarms", "$HOME/swarms", "", "swarms", "/scratch/../etc", "/a/.."])
def test_dangerous_or_relative_remote_roots_are_refused(tmp_path, remote_root):
    with pytest.raises(SwarmSpecError, match="remote_root"):
        operator(tmp_path, ssh_conn_id="hpc", remote_root=remote_root)._validated()
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize(
    ("kwargs", "words"),
    [
        ({"scheduler": "pbs"}, "scheduler must be one of direct, slurm"),
        ({"nodes": 0}, "nodes must be an integer >= 1"),
        ({"task_retries": -1}, "task_retries must be an integer >= 0"),
        ({"max_failed_fraction": 1.5}, "max_failed_fraction must be between"),
        ({"heartbeat_interval": 10, "heartbeat_timeout": 5}, "heartbeat_timeout must be longer"),
        ({"ssh_conn_id": "hpc"}, "remote_root is not"),
        ({"remote_root": "/scratch"}, "need ssh_conn_id"),
        ({"shared_root": "relative", "ssh_conn_id": "hpc", "remote_root": "/scratch"}, "shared_root must be an absolute path"),
        ({"scheduler": "slurm", "slurm_options": {"partiton": "x"}}, "unknown slurm_options partiton"),
        ({"scheduler": "slurm", "slurm_options": {"partition": "a b"}}, "not a plain value"),
        ({"scheduler": "slurm", "slurm_options": {"extra": ["--x\n#SBATCH --y"]}}, "one sbatch option"),
        ({"scheduler": "slurm", "setup": ["module load a\nmodule load b"]}, "single line"),
        ({"container": "apptainer exec x.sif"}, "scheduler='slurm' or 'oar' only"),
        ({"scheduler": "oar", "slurm_options": {"partition": "debug"}}, "slurm_options apply to scheduler='slurm' only"),
        ({"scheduler": "slurm", "oar_options": {"walltime": "1:00:00"}}, "oar_options apply to scheduler='oar' only"),
        ({"scheduler": "oar", "oar_options": {"walltime": "1h"}}, "is not a walltime"),
        ({"scheduler": "oar", "oar_options": {"queue": "a;b"}}, "not a plain value"),
    ],
)
def test_options_that_cannot_work_are_refused_clearly(tmp_path, kwargs, words):
    op = operator(tmp_path, **kwargs)
    with pytest.raises(SwarmSpecError, match=words.replace("(", r"\(").replace("[", r"\[")):
        op._validated()
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize(
    ("case", "swarm_id"), [("parent", "../up"), ("templated", "{{ '..' }}"), ("slash", "a/b"), ("hidden", ".hidden")]
)
def test_a_swarm_id_that_is_not_a_plain_name_fails_the_task_before_anything_is_staged(run_dag, tmp_path, capfd, case, swarm_id):
    """Run by Airflow (swarm_id is templated): the task fails saying what to fix, and
    nothing is created anywhere — the swarm root would otherwise escape work_root."""
    from airflow.sdk import DAG

    dag_id = f"bad_swarm_id_{case}"
    with DAG(dag_id, schedule=None, start_date=datetime(2026, 1, 1), catchup=False) as dag:
        operator(tmp_path / "run", swarm_id=swarm_id, work_root=str(tmp_path / "run" / "swarms"))
    result = run_dag(dag)

    assert result.task_states() == {"swarm": "failed"}
    rendered = ".." if swarm_id == "{{ '..' }}" else swarm_id
    (message,) = raised(capfd.readouterr().out)
    assert message.startswith(f"SwarmSpecError: swarm_id {rendered!r} is not valid: ")
    assert list(tmp_path.iterdir()) == []


def test_sbatch_directives_default_to_one_node_one_task_no_requeue():
    from airflow_provider_locusts.swarm.schedulers.slurm import sbatch_directives

    assert sbatch_directives({"partition": "short", "exclusive": True, "extra": ["--reservation=lab"]}, 8) == [
        "--nodes=1", "--ntasks=1", "--no-requeue", "--partition=short", "--cpus-per-task=8", "--exclusive", "--reservation=lab",
    ]
