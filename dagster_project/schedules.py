"""Schedules: the nightly full rebuild, and the checks (on by default, every 10 minutes unless
``[projections] checks_interval_minutes`` says otherwise): the reports' builds wait on their results."""

from dagster import DefaultScheduleStatus, JobDefinition, ScheduleDefinition

from dagster_project.jobs import checks_job


def full_rebuild_daily(full_rebuild: JobDefinition) -> ScheduleDefinition:
    return ScheduleDefinition(
        name="full_rebuild_daily",
        job=full_rebuild,
        cron_schedule="0 3 * * *",
        execution_timezone="UTC",
        default_status=DefaultScheduleStatus.RUNNING,
        description="Every day at 03:00 UTC rebuild every projection from the whole event store.",
    )


def checks_schedule(interval_minutes: int) -> ScheduleDefinition:
    return ScheduleDefinition(
        name="checks",
        job=checks_job,
        cron_schedule=_every(interval_minutes),
        execution_timezone="UTC",
        default_status=DefaultScheduleStatus.RUNNING,
        description=f"Run every asset check every {interval_minutes} minute(s); a failed blocking check "
        "holds back the reports built on what it checks.",
    )


def _every(minutes: int) -> str:
    if minutes < 60:
        return f"*/{minutes} * * * *"
    return f"0 */{max(minutes // 60, 1)} * * *" if minutes < 24 * 60 else "0 3 * * *"
