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
