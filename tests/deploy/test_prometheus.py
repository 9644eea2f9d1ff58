"""The alert rules, their promtool unit tests, the compose stack's Prometheus config, the
Kubernetes PrometheusRule, and the Grafana dashboard's queries, checked with Debian's promtool.
Every driftloop_* metric they use must be one the code declares."""

from __future__ import annotations

import json
import re
from pathlib import Path

import yaml

from driftloop.settings import REPO_ROOT
from tests.deploy.manifests import K8S
from tests.deploy.tools import run, tool

PROMETHEUS = REPO_ROOT / "deploy" / "prometheus"
RULES = PROMETHEUS / "rules" / "driftloop.rules.yml"
DASHBOARD = REPO_ROOT / "deploy" / "grafana" / "dashboards" / "driftloop.json"
# What the issue asks the alerts to cover.
REQUIRED_ALERTS = {
    "DriftloopDriftDetected",
    "DriftloopFitFailed",
    "DriftloopCandidateRejectedRepeatedly",
    "DriftloopSwapFailed",
    "DriftloopServingLatencyHigh",
    "DriftloopConsumerLagHigh",
    "DriftloopPredictionLogDrops",
}
# Grafana's variables, replaced by values PromQL accepts.
GRAFANA_VARIABLES = {"$__rate_interval": "5m", "$__range": "1h", "$job": "driftloop-.*"}


def promtool(*args: str) -> tuple[int, str]:
    result = run([tool("promtool"), *args], cwd=PROMETHEUS)
    return result.returncode, result.stdout + result.stderr


def test_rules_check() -> None:
    code, output = promtool("check", "rules", str(RULES))
    assert code == 0, output


def test_rules_unit_tests_pass() -> None:
    code, output = promtool("test", "rules", "tests/driftloop.test.yml")
    assert code == 0, output


def test_a_broken_rule_fails_its_unit_test(tmp_path: Path) -> None:
    (tmp_path / "rules").mkdir()
    (tmp_path / "tests").mkdir()
    # A threshold moved from 250 ms to 1 s: the latency alert's test must notice.
    (tmp_path / "rules" / RULES.name).write_text(RULES.read_text().replace("> 0.25", "> 1"))
    (tmp_path / "tests" / "t.yml").write_text(
        (PROMETHEUS / "tests" / "driftloop.test.yml").read_text()
    )
    result = run([tool("promtool"), "test", "rules", str(tmp_path / "tests" / "t.yml")])
    assert result.returncode != 0 and "DriftloopServingLatencyHigh" in result.stdout + result.stderr


def test_every_alert_has_a_unit_test_and_the_issue_list_is_covered() -> None:
    alerts = {
        rule["alert"]
        for group in yaml.safe_load(RULES.read_text())["groups"]
        for rule in group["rules"]
        if "alert" in rule
    }
    assert alerts >= REQUIRED_ALERTS
    tests = yaml.safe_load((PROMETHEUS / "tests" / "driftloop.test.yml").read_text())["tests"]
    tested = {case["alertname"] for test in tests for case in test.get("alert_rule_test", [])}
    assert tested == alerts


def test_prometheus_config_checks() -> None:
    code, output = promtool("check", "config", "prometheus.yml")
    assert code == 0, output


def test_the_kubernetes_rule_is_the_rules_file() -> None:
    rule = yaml.safe_load((K8S / "base" / "monitoring" / "prometheusrule.yaml").read_text())
    assert rule["spec"]["groups"] == yaml.safe_load(RULES.read_text())["groups"], (
        "run `python deploy/prometheus/to_prometheusrule.py`"
    )


def dashboard_queries() -> list[tuple[str, str]]:
    dashboard = json.loads(DASHBOARD.read_text())
    queries = [
        (panel["title"], target["expr"])
        for panel in dashboard["panels"]
        for target in panel.get("targets", [])
    ]
    queries += [("annotation " + a["name"], a["expr"]) for a in dashboard["annotations"]["list"]]
    return queries


def test_dashboard_queries_are_valid_promql(tmp_path: Path) -> None:
    rules = []
    for index, (title, expr) in enumerate(dashboard_queries()):
        for variable, value in GRAFANA_VARIABLES.items():
            expr = expr.replace(variable, value)
        assert "$" not in expr, f"{title}: unknown variable in {expr}"
        rules.append({"record": f"dashboard:query_{index}", "expr": expr})
    path = tmp_path / "dashboard.rules.yml"
    path.write_text(yaml.safe_dump({"groups": [{"name": "dashboard", "rules": rules}]}))
    code, output = promtool("check", "rules", str(path))
    assert code == 0, output


def test_dashboard_covers_the_loop_and_uses_the_provisioned_datasource() -> None:
    dashboard = json.loads(DASHBOARD.read_text())
    exprs = " ".join(expr for _, expr in dashboard_queries())
    for metric in (
        "driftloop_serve_requests_total",
        "driftloop_serve_request_seconds_bucket",
        "driftloop_monitor_feature_drift_score",
        "driftloop_monitor_triggers_total",
        "driftloop_trainer_fits_total",
        "driftloop_serve_swaps_total",
        "driftloop_consumer_lag",
    ):
        assert metric in exprs, f"the dashboard does not show {metric}"
    assert "model_version" in exprs
    [variable] = [v for v in dashboard["templating"]["list"] if v["type"] == "datasource"]
    assert variable["query"] == "prometheus"
    provisioned = yaml.safe_load(
        (REPO_ROOT / "deploy/grafana/provisioning/datasources/prometheus.yml").read_text()
    )
    assert provisioned["datasources"][0]["type"] == "prometheus"
    panels = [p for p in dashboard["panels"] if p["type"] != "row"]
    assert all(p["datasource"]["uid"] == "${datasource}" for p in panels)
    ids = [p["id"] for p in dashboard["panels"]]
    assert len(ids) == len(set(ids))


def declared_metrics() -> set[str]:
    """Every metric name the code declares (a string literal `"driftloop_..."`)."""
    names: set[str] = set()
    for folder in ("driftloop", "services"):
        for path in (REPO_ROOT / folder).rglob("*.py"):
            names |= set(re.findall(r"[\"'](driftloop_[a-z0-9_]+)[\"']", path.read_text()))
    return names


def used_metrics() -> set[str]:
    texts = [RULES.read_text(), DASHBOARD.read_text()]
    used = {m for text in texts for m in re.findall(r"\bdriftloop_[a-z0-9_]+", text)}
    # Histogram series are the declared name plus a suffix.
    return {re.sub(r"_(bucket|sum|count)$", "", m) for m in used}


def test_every_metric_used_is_declared_in_the_code() -> None:
    missing = sorted(used_metrics() - declared_metrics())
    assert not missing, f"the rules or the dashboard use metrics no service declares: {missing}"
