"""driftloop's four services. Each has the same shape: ``settings.py`` (typed, from the
environment), ``main.py`` (the entry point ``driftloop run <service>`` calls), a pure core that
tests drive without I/O, and thin adapters at the edges. Services never import each other: they
share ``driftloop`` (the contracts) and talk only through Kafka topics and the MLflow registry."""
