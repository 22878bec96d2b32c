"""A Slack message for every failed run: which assets, which days, why, and a link.

On when SLACK_BOT_TOKEN and FEATURE_ASSETS_SLACK_CHANNEL are set in the daemon's
environment (the `alerts` resource, `SlackAlerts`), silent otherwise.
FEATURE_ASSETS_UI_URL is the base of the run link (default http://localhost:3000).
"""

from dagster import (
    DagsterEventType,
    DefaultSensorStatus,
    RunFailureSensorContext,
    SkipReason,
    run_failure_sensor,
)

from feature_assets.core.dates import compact_days
from feature_assets.defs.resources import SlackAlerts
from feature_assets.ops.status import first_error_line, run_days


def failure_message(context: RunFailureSensorContext, ui_url: str) -> str:
    run = context.dagster_run
    assets = sorted(key.to_user_string() for key in run.asset_selection or _planned(context))
    days = sorted(run_days(run.tags))
    ui_url = ui_url.rstrip("/")
    error = first_error_line(context.instance, run.run_id).split(": ", 1)[-1]
    return (
        f":red_circle: feature_assets run failed: {', '.join(assets) or run.job_name}\n"
        f"days: {compact_days(days) if days else 'none'}\n"
        f"error: {error}\n"
        f"{ui_url}/runs/{run.run_id}"
    )


def _planned(context: RunFailureSensorContext) -> set:
    """The assets a run set out to materialise (for runs without an asset selection)."""
    records = context.instance.get_records_for_run(
        context.dagster_run.run_id, of_type=DagsterEventType.ASSET_MATERIALIZATION_PLANNED
    ).records
    return {record.event_log_entry.dagster_event.asset_key for record in records}


@run_failure_sensor(
    name="slack_on_run_failure",
    default_status=DefaultSensorStatus.RUNNING,
    description="Posts each failed run to Slack when SLACK_BOT_TOKEN is set.",
)
def slack_on_run_failure(context: RunFailureSensorContext, alerts: SlackAlerts):
    if not alerts.on:
        return SkipReason("SLACK_BOT_TOKEN or FEATURE_ASSETS_SLACK_CHANNEL is not set")
    alerts.post(failure_message(context, alerts.ui_url))
