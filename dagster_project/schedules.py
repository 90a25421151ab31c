"""Schedules: the nightly full rebuild, and (off until turned on) the checks every 10 minutes."""

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


checks_every_10_minutes = ScheduleDefinition(
    name="checks_every_10_minutes",
    job=checks_job,
    cron_schedule="*/10 * * * *",
    execution_timezone="UTC",
    default_status=DefaultScheduleStatus.STOPPED,
    description="Run every asset check every 10 minutes (turn on in the UI).",
)
