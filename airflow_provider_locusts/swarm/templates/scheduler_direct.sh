# Scheduler functions for managers started directly: there are no jobs. Sourced by the host
# scripts; a job function called here is a bug, and says so.
scheduler_job_script() { printf './manager_%s.sh\n' "$1"; }
scheduler_submit() { echo "scheduler 'direct' submits no jobs" >&2; return 1; }
scheduler_states() { :; }
scheduler_class() { echo ended; }
scheduler_cancel() { echo "scheduler 'direct' has no job $1 to cancel" >&2; return 1; }
scheduler_info() { echo "- - -"; }
