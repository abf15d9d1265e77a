"""Deployment metrics for Prometheus: computed from the state store, rendered in the text exposition format by
prometheus-client, pushed to a Pushgateway and/or written for node_exporter's textfile collector (see
docs/releases-and-metrics.md).
"""
