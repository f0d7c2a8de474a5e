"""What people look at: the Swarm view mounted in the Airflow api-server (app.py, behind Airflow's
auth), its operator extra link, server-side SVG plots and the self-contained HTML report.

plots.py, svg.py, report.py, live.py and manifest_table.py import nothing from Airflow; the
Airflow internals the view needs are isolated in airflow_auth.py and airflow_data.py."""
