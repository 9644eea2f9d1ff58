"""serve: answers inference requests with the champion model, logs every prediction to Kafka,
and hot-swaps to a newly promoted version with no dropped request."""
