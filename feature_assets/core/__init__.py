"""The point-in-time engine and the rules: schemas, invalid-race rules, the feature-set
declaration, history views, the engine that runs a set over days. No Dagster, no I/O."""
