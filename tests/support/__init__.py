"""Test support shared by the suites that start real processes (no Airflow import here)."""
