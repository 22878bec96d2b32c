"""What the commands do, testable without click: day status, backfills, planning, the
leakage check."""
