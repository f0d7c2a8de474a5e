"""airflow-provider-locusts: swarms of small shell tasks, run from Airflow."""

from __future__ import annotations

__version__ = "0.1.0"


def get_provider_info() -> dict:
    """Describe the provider to Airflow's ProvidersManager (entry point ``apache_airflow_provider``)."""
    return {
        "package-name": "airflow-provider-locusts",
        "name": "Locusts",
        "description": "Run swarms of many small, independent shell tasks locally or on SLURM or OAR over SSH.",
        "versions": [__version__],
        "integrations": [
            {
                "integration-name": "Locusts",
                "external-doc-url": "https://pypi.org/project/airflow-provider-locusts/",
                "tags": ["software"],
            }
        ],
        "operators": [
            {
                "integration-name": "Locusts",
                "python-modules": ["airflow_provider_locusts.operators.swarm"],
            }
        ],
        "hooks": [
            {
                "integration-name": "Locusts",
                "python-modules": ["airflow_provider_locusts.hooks.locusts"],
            }
        ],
        "triggers": [
            {
                "integration-name": "Locusts",
                "python-modules": ["airflow_provider_locusts.triggers.swarm"],
            }
        ],
        "config": {
            "locusts": {
                "description": "Settings of the Locusts provider (swarms of small shell tasks).",
                "options": {
                    "work_root": {
                        "description": (
                            "Folder on each worker for the roots of local swarms (no ssh_conn_id) and for the "
                            "scratch folders SSH copy mode stages and gathers through. Empty: $AIRFLOW_HOME/locusts. "
                            "An operator's work_root overrides it."
                        ),
                        "version_added": "0.2.0",
                        "type": "string",
                        "example": "/scratch/airflow/locusts",
                        "default": None,
                    },
                },
            },
        },
        # The Swarm view (also an `airflow.plugins` entry point: Airflow loads provider
        # plugins from here only with [core] lazy_discover_providers = False).
        "plugins": [{"name": "locusts", "plugin-class": "airflow_provider_locusts.www.plugin.LocustsPlugin"}],
        "extra-links": ["airflow_provider_locusts.www.links.SwarmLink"],
    }
