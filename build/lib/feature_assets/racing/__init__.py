"""The race domain: schemas, data-quality rules and feature maths. No Dagster imports."""
