"""ingest: validates predictions and labels, joins them by request_id into labelled examples,
writes those to the examples topic and the example store, dead-letters what is invalid."""
