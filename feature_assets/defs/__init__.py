"""Dagster objects only, by area: partitions, resources, the raw and feature-set assets and
their checks, training, automation, alerts, the event-log storages. The work they wire lives
in `core`, `io` and `training`."""
