"""Opt-in trace export: a TracerProvider from the ``OTEL_*`` environment, per actor process.

Only when ``MOLTBOT_OTEL=1`` and the OpenTelemetry SDK and OTLP exporter are importable;
otherwise the API's no-op tracer stays and spans cost next to nothing. Never raises.
"""

from __future__ import annotations

import importlib
import logging
import os

log = logging.getLogger("moltbot.telemetry")

_configured = False


def configure_tracing() -> bool:
    """Install an SDK TracerProvider exporting over OTLP (once per process); True if done."""
    global _configured
    if _configured:
        return True
    if os.environ.get("MOLTBOT_OTEL") != "1":
        return False
    try:
        from opentelemetry import trace

        sdk_trace = importlib.import_module("opentelemetry.sdk.trace")
        export = importlib.import_module("opentelemetry.sdk.trace.export")
        resources = importlib.import_module("opentelemetry.sdk.resources")
        protocol = os.environ.get("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL") or os.environ.get(
            "OTEL_EXPORTER_OTLP_PROTOCOL", "http/protobuf"
        )
        kind = "grpc" if protocol == "grpc" else "http"
        exporter_mod = importlib.import_module(
            f"opentelemetry.exporter.otlp.proto.{kind}.trace_exporter"
        )
        os.environ.setdefault("OTEL_SERVICE_NAME", "moltbot")
        provider = sdk_trace.TracerProvider(resource=resources.Resource.create())
        provider.add_span_processor(export.BatchSpanProcessor(exporter_mod.OTLPSpanExporter()))
        trace.set_tracer_provider(provider)
    except Exception as exc:  # no SDK or exporter, a bad env value: keep the no-op tracer
        log.warning("MOLTBOT_OTEL=1 but tracing is not configured: %s", type(exc).__name__)
        return False
    _configured = True
    return True
