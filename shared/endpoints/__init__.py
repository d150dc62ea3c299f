"""Online endpoints and deployments: the one way tuneflow reads and changes them (``control``), and
what it does with them over time (teardown, idle teardown, the activity that idle teardown reads)."""
