"""The provider's Airflow plugin: the Swarm view (a FastAPI app mounted at /locusts in the
api-server) and its tab on the task-instance page.

Registered by the package itself (the `airflow.plugins` entry point, which Airflow loads by
default, and `plugins` in get_provider_info): installing the provider is all a user does.

Every Airflow process loads plugins, the workers too, so this module stays light: the app,
which imports the api-server's security and models, is built only when something reads
`fastapi_apps` (the api-server mounting it, or the plugin listing)."""

from __future__ import annotations

import functools

try:
    from airflow.sdk.plugins_manager import AirflowPlugin
except ImportError:  # Airflow 3.1
    from airflow.plugins_manager import AirflowPlugin

from airflow_provider_locusts.www.urls import URL_PREFIX, external_view_href

PLUGIN_NAME = "locusts"


def _base_url() -> str:
    try:
        from airflow.sdk.configuration import conf
    except ImportError:  # Airflow 3.1
        from airflow.configuration import conf
    return conf.get("api", "base_url", fallback="/")


@functools.cache
def _fastapi_apps() -> tuple[dict, ...]:
    from airflow_provider_locusts.www.app import create_app

    return ({"app": create_app(), "url_prefix": URL_PREFIX, "name": "Locusts swarm view"},)


class _BuiltOnFirstRead:
    """A class attribute computed when first read, on the class or on an instance (Airflow
    reads provider plugins from the class and entry-point plugins from an instance)."""

    def __get__(self, instance, owner) -> list[dict]:
        return list(_fastapi_apps())


class LocustsPlugin(AirflowPlugin):
    name = PLUGIN_NAME
    fastapi_apps = _BuiltOnFirstRead()
    external_views = [
        {
            "name": "Swarm",
            "href": external_view_href(_base_url()),
            "destination": "task_instance",
            "url_route": "locusts-swarm",
        }
    ]
