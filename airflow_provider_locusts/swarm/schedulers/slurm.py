"""SLURM: one `sbatch` job per manager; `#SBATCH` directives from `slurm_options`."""

from __future__ import annotations

from collections.abc import Mapping

from airflow_provider_locusts.swarm.schedulers.base import Scheduler, check_extra, check_plain, check_unknown

# slurm_options key → sbatch long option. `exclusive` is a flag; `extra` holds free lines.
SBATCH_OPTIONS = {
    "partition": "--partition",
    "time": "--time",
    "cpus_per_task": "--cpus-per-task",
    "mem": "--mem",
    "mem_per_cpu": "--mem-per-cpu",
    "constraint": "--constraint",
    "gres": "--gres",
    "account": "--account",
    "qos": "--qos",
    "mail_user": "--mail-user",
    "mail_type": "--mail-type",
}


def sbatch_directives(options: Mapping[str, object] | None, processes: int) -> list[str]:
    """The `#SBATCH` option words for one manager job (one node, one task, `processes` CPUs by default)."""
    options = dict(options or {})
    check_unknown("slurm_options", options, [*SBATCH_OPTIONS, "exclusive", "extra"])
    options.setdefault("cpus_per_task", processes)
    # --no-requeue: SLURM would otherwise requeue a job whose node failed and its manager
    # would run its whole task list again; a lost manager is rescheduled by the swarm
    # itself, which runs only the tasks that did not finish.
    directives = ["--nodes=1", "--ntasks=1", "--no-requeue"]
    for key, flag in SBATCH_OPTIONS.items():
        value = options.get(key)
        if value is None or value == "":
            continue
        directives.append(f"{flag}={check_plain('slurm_options', key, value)}")
    if options.get("exclusive"):
        directives.append("--exclusive")
    directives += check_extra("slurm_options", options.get("extra"), "--reservation=big", "sbatch")
    return directives


class SlurmScheduler(Scheduler):
    name = "slurm"
    commands = ("sbatch", "squeue", "scontrol", "scancel")
    options_name = "slurm_options"
    job_script_kind = "slurm"
    job_script_template = "slurm.sh.j2"
    active_states = frozenset({"PENDING", "CONFIGURING", "RUNNING", "COMPLETING", "SUSPENDED"})
    ended_early_states = frozenset(
        {"TIMEOUT", "CANCELLED", "FAILED", "NODE_FAIL", "PREEMPTED", "OUT_OF_MEMORY", "BOOT_FAIL", "DEADLINE"}
    )

    def directives(self, options: Mapping[str, object] | None, processes: int) -> list[str]:
        return sbatch_directives(options, processes)
