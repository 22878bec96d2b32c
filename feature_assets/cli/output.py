"""How the commands print: status lines, day summaries, progress."""

from __future__ import annotations

CAUSES_SHOWN = 5  # failed-day causes listed per asset without --verbose
LINE_WIDTH = 160


def shorten(text: str, width: int = LINE_WIDTH) -> str:
    return text if len(text) <= width else text[: width - 3] + "..."


def days_summary(days: list[str], ranges_shown: int = 3) -> str:
    from feature_assets.core.dates import compact_days

    ranges = compact_days(days).split(", ")
    more = f" and {len(ranges) - ranges_shown} more ranges" if len(ranges) > ranges_shown else ""
    return f"{', '.join(ranges[:ranges_shown])}{more} ({len(days)} day(s))"


def status_lines(state, verbose: bool) -> list[str]:
    """A few lines per asset: counts, then failed days by cause, in progress, missing."""
    lines = [
        f"{state.asset}: {len(state.materialized)} materialized, {len(state.failed)} failed,"
        f" {len(state.in_progress)} in progress, {len(state.missing)} missing"
    ]
    if state.in_progress:
        lines.append(f"  in progress: {days_summary(state.in_progress)}")
    if state.failed and verbose:
        lines.append("  failed:")
        lines += [f"    {day}: {state.errors[day].detail}" for day in state.errors]
        lines += [f"    {day}: unknown cause" for day in state.failed if day not in state.errors]
    elif state.failed:
        causes = state.failures_by_cause()
        lines.append(f"  failed, by cause ({len(causes)}):")
        for cause, days in causes[:CAUSES_SHOWN]:
            # the cause groups days by their error with race ids blanked; the line shows
            # the first day's own race_id, which a person looks up
            first = state.example(days)
            on_first = f", first on {days[0]}" if len(days) > 1 and first != cause else ""
            lines.append(shorten(f"    {days_summary(days)}{on_first}: {first}"))
        if len(causes) > CAUSES_SHOWN:
            lines.append(f"    ... {len(causes) - CAUSES_SHOWN} more causes (--verbose shows all)")
    if state.missing:
        lines.append(f"  missing: {days_summary(state.missing)}")
    if state.stale:
        lines.append(f"  stale (its code changed since): {days_summary(state.stale)}")
    return lines


def status_advice(states) -> str:
    failed = any(state.failed for state in states)
    missing = any(state.missing for state in states)
    stale = any(state.stale for state in states)
    commands = [
        *(["feature-assets backfill --failed --wait"] if failed else []),
        *(["feature-assets backfill --missing --wait"] if missing else []),
        *(["feature-assets backfill --stale --wait"] if stale else []),
    ]
    return "to fix: " + "; ".join(commands) if commands else "days are still in progress"
