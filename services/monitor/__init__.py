"""monitor: windows over predictions and labelled examples, data and concept drift against the
serving model's reference, drift events for alerting and trigger events for the trainer."""
