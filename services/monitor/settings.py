"""monitor's settings: the shared ones plus its own, all from ``DRIFTLOOP_*`` variables."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from driftloop.settings import Settings


class MonitorSettings(Settings):
    monitor_port: int = Field(8083, ge=1, le=65535, description="monitor's HTTP port.")
    monitor_group_id: str = Field(
        "driftloop-monitor",
        description="monitor's consumer group (predictions, examples, model updates).",
    )
    monitor_window_kind: Literal["count", "time"] = Field(
        "count", description="Windows by `count` of events or by `time` (event time)."
    )
    monitor_window_size: float = Field(
        500, gt=0, description="Window length: events (count) or seconds (time)."
    )
    monitor_window_step: float = Field(
        0,
        ge=0,
        description="Distance between window starts; 0 means the size (tumbling), less "
        "means sliding windows.",
    )
    monitor_min_window_events: int = Field(
        30, ge=1, description="A closed window with fewer events gets no verdict."
    )
    monitor_false_alarm_rate: float = Field(
        1e-5,
        gt=0,
        lt=1,
        description="False triggers per event allowed on a stationary stream (1e-5: one per "
        "100,000 events); per-window test levels and detector settings derive from it.",
    )
    monitor_alert_ert_s: float = Field(
        7 * 86_400,
        gt=0,
        description="Expected seconds between two false drift events of a model on a "
        "stationary stream, at its observed traffic (never more often than "
        "MONITOR_FALSE_ALARM_RATE per event); a window raises a drift event only at that level.",
    )
    monitor_correction: Literal["holm", "bonferroni"] = Field(
        "holm", description="Correction for testing a window's features together."
    )
    monitor_open_after: int = Field(
        2, ge=1, description="Drifted windows in a row that open a drift episode."
    )
    monitor_close_after: int = Field(
        3, ge=1, description="Clean windows in a row that close a drift episode."
    )
    monitor_cooldown_s: float = Field(
        600, ge=0, description="Least event time between two drift triggers of one model."
    )
    monitor_retry_s: float = Field(
        60,
        ge=0,
        description="After a promotion, or a rejected or failed fit for the champion, event "
        "time before the next drift trigger (instead of the rest of the cooldown).",
    )
    monitor_trigger_min_examples: int = Field(
        2_000,
        ge=0,
        description="Labelled examples since a drift episode's onset before its trigger goes "
        "out, so that the one refit it asks for has the new concept to learn from; 0 sends "
        "it at once.",
    )
    monitor_recall_examples: int = Field(
        300,
        ge=0,
        description="Labelled examples since a drift episode's onset before the early recall: "
        "a trigger asking the trainer whether an earlier champion already knows the new "
        "concept (no fit); 0 turns it off. Only below the trigger's min examples.",
    )
    monitor_data_arrival_examples: int = Field(
        0,
        ge=0,
        description="Labelled examples of the champion's predictions since its promotion that "
        "fire a `data_arrival` trigger; 0 turns it off.",
    )
    monitor_schedule_s: float = Field(
        0,
        ge=0,
        description="Seconds between `schedule` triggers, whatever the data; 0 turns them off.",
    )
    monitor_quality_window: int = Field(
        1000,
        ge=1,
        description="Data quality: events per stream in a model's count window (predictions "
        "with their dead letters; labelled examples with the labels' dead letters).",
    )
    monitor_quality_min_events: int = Field(
        200,
        ge=1,
        description="Data quality: events a stream's window must hold before its invalid share "
        "is judged.",
    )
    monitor_quality_max_invalid_share: float = Field(
        0.1,
        gt=0,
        le=1,
        description="Share of a stream's events dead-lettered for breaking the model's "
        "contract past which its data is degraded: a `data-quality` event goes out and its "
        "triggers (all but manual ones) are held until the share is back to half of it; 1 "
        "never holds.",
    )
    monitor_detector: Literal["adwin", "page_hinkley", "kswin"] = Field(
        "adwin", description="River detector on the error stream of labelled examples."
    )
    monitor_holdout_metric: str = Field(
        "accuracy",
        description="ModelCard metric (an accuracy) the error stream's CUSUM is compared with.",
    )
    monitor_holdout_examples: int = Field(
        1000,
        ge=1,
        description="Holdout size behind that metric when the card's metrics carry no "
        "`holdout_examples`; a smaller holdout is trusted less.",
    )
    monitor_min_error_rise: float = Field(
        0.05,
        gt=0,
        lt=1,
        description="Smallest rise of the error rate over the holdout's that the CUSUM is "
        "tuned to detect.",
    )
    monitor_reports: bool = Field(
        True, description="Write an Evidently report (HTML and JSON) for each judged window."
    )
    monitor_report_backlog: int = Field(
        2,
        ge=0,
        description="Reports waiting to be built past which a window's report is skipped "
        "(the drift event goes out without a link).",
    )
    monitor_recent_windows: int = Field(
        100, ge=1, description="Windows listed on the HTTP page and /v1/windows."
    )
