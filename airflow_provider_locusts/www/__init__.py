"""What people look at: server-side SVG plots, the self-contained HTML report, and the Swarm
view mounted in the Airflow api-server. plots.py and report.py import nothing from Airflow."""
