"""ingest's settings: the shared ones plus its own, all from ``DRIFTLOOP_*`` variables."""

from __future__ import annotations

from pydantic import Field

from driftloop.settings import Settings


class IngestSettings(Settings):
    ingest_port: int = Field(8081, ge=1, le=65535, description="ingest's HTTP port.")
    ingest_group_id: str = Field("driftloop-ingest", description="ingest's consumer group.")
    ingest_join_ttl_s: float = Field(
        7 * 86_400, gt=0, description="How long (event time) a prediction waits for its label."
    )
    ingest_join_max_entries: int = Field(
        2_000_000, ge=1, description="Most requests the join holds; past it the oldest go."
    )
    ingest_flush_rows: int = Field(
        10_000, ge=1, description="Examples per store write (a checkpoint: offsets commit after)."
    )
    ingest_flush_s: float = Field(
        5.0, gt=0, description="Longest wait before buffered examples are written."
    )
    ingest_max_body_bytes: int = Field(
        1 << 20, ge=1024, description="Largest HTTP request body ingest accepts."
    )
    topic_ingest_changelog: str = Field(
        "driftloop.ingest-join-changelog",
        description="Compacted topic that the join's state is rebuilt from after a restart.",
    )
