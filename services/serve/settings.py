"""serve's settings: the shared ones plus its own, all from ``DRIFTLOOP_*`` variables."""

from __future__ import annotations

import socket

from pydantic import Field

from driftloop.settings import Settings


class ServeSettings(Settings):
    serve_port: int = Field(8080, ge=1, le=65535, description="serve's HTTP port.")
    serve_host: str = Field("0.0.0.0", description="Address serve's HTTP server binds.")
    serve_max_batch_size: int = Field(
        64, ge=1, description="Most rows the model is called with at once (micro-batching)."
    )
    serve_max_wait_ms: float = Field(
        1.0,
        ge=0,
        description="Longest a request waits for others to share its model call; only waited "
        "when requests are arriving concurrently (0: never wait).",
    )
    serve_inline_below_ms: float = Field(
        0.2,
        ge=0,
        description="A model version whose one-row call measures under this is called on the "
        "event loop, unbatched (a hand-off to the model thread costs more); 0: always batch "
        "on the model thread.",
    )
    serve_max_body_bytes: int = Field(
        1 << 20, ge=1024, description="Largest HTTP request body serve accepts (else 413)."
    )
    serve_alias_poll_s: float = Field(
        30.0,
        gt=0,
        description="How often each replica re-resolves the champion alias, so that one that "
        "missed a model-update event converges.",
    )
    serve_log_buffer: int = Field(
        100_000,
        ge=1,
        description="Most predictions held for Kafka; past it (Kafka down) new ones are dropped "
        "and counted.",
    )
    serve_log_linger_ms: float = Field(
        100.0,
        ge=0,
        description="How long a prediction waits for others to share its send to Kafka (fewer, "
        "larger sends cost the event sender and the broker less CPU a prediction).",
    )
    serve_admin_token: str = Field(
        "",
        description="Bearer token of the admin endpoints (reload); empty turns them off.",
    )
    serve_replica_id: str = Field(
        default_factory=socket.gethostname,
        description="This replica's name in swap events (the pod's name on Kubernetes).",
        json_schema_extra={"shown_default": "<host name>"},
    )
    serve_fast_path: str = Field(
        "auto",
        pattern="^(auto|predict|call|function|tflite)$",
        description="How the model is called: `auto` measures every path at load time and "
        "keeps the fastest that gives the same outputs; or one of predict, call, function, "
        "tflite.",
    )
    serve_online_answers: bool = Field(
        True,
        description="Answer with the online model while the trainer's arbiter says it is "
        "better; off: the champion always answers and the online model is never loaded.",
    )
    serve_shadow_previous_s: float = Field(
        3600.0,
        ge=0,
        description="How long the champion a promotion replaced stays loaded, scored in shadow "
        "on the same requests (the evidence for a rollback, which swaps it back at once); keep "
        "it longer than the trainer's probation (`TRAINER_ROLLBACK_PROBATION` labelled "
        "examples) takes at your traffic; 0: it is closed at the swap.",
    )
    serve_shadow_queue: int = Field(
        10_000,
        ge=1,
        description="Most predictions waiting to be scored by the models in shadow; past it "
        "they are logged without shadows and counted.",
    )
    serve_kafka_inference: bool = Field(
        True,
        description="Answer the inference requests on the inference-requests topic (a consumer "
        "group shared by the replicas), each with a prediction event, in Kafka transactions.",
    )
    serve_kafka_group_id: str = Field(
        "driftloop-serve-inference",
        description="Consumer group of the replicas that answer inference requests over Kafka.",
    )
    serve_kafka_max_batch: int = Field(
        500,
        ge=1,
        description="Most inference requests answered in one Kafka transaction.",
    )
    serve_kafka_transaction_timeout_ms: int = Field(
        10_000,
        ge=1_000,
        description="How long the broker keeps a dead replica's open transaction before it "
        "aborts it; until then readers of the predictions topic wait. A replica restarted "
        "under the same `SERVE_REPLICA_ID` aborts it at once.",
    )
    serve_kafka_reply_prefix: str = Field(
        "driftloop.replies.",
        min_length=1,
        description="A request's `reply_to` topic must start with this: a request cannot have "
        "serve write into any other topic (the loop's own among them).",
    )
