"""Issue #17: W3C trace context through real Envoy sidecars, and their spans at an
OpenTelemetry collector (``meshfed controlplane serve --otlp-collector``).

The collector is a local OTLP/gRPC receiver (``TraceService/Export``) that keeps what it is
sent; the control plane runs in-process; the client and the echo sidecar are real
Envoys with mTLS between them.
"""

from __future__ import annotations

import asyncio
import http.client
import json
import secrets
import time

import grpc
import pytest
from opentelemetry.proto.collector.trace.v1 import trace_service_pb2

from federation.controlplane.server import ControlPlane, ControlPlaneConfig
from federation.model.documents import load_documents
from federation.model.locality import Locality
from tests.integration.harness import (
    InProcessPlane,
    free_port,
    get,
    start_echo,
    start_sidecar,
    wait_until,
    workload_yaml,
)

pytestmark = [pytest.mark.integration, pytest.mark.slow]
ZONE_A = "aws/us-east-1/us-east-1a"
HOST = "echo.demo.svc.clusterset.local"


class Receiver:
    """An OTLP trace receiver (``TraceService/Export``) that keeps ``(trace id,
    service.name)`` of every span.

    The messages are the OTLP protos that Envoy's own API package (xds-protos) ships, an older
    release in which ``ResourceSpans.scope_spans`` is still ``instrumentation_library_spans``:
    the field is read by its number (2, the same on the wire in every release). The
    opentelemetry-proto package is not used: it installs the same module paths, and which one
    wins depends on the order pip installs them in."""

    SERVICE = "opentelemetry.proto.collector.trace.v1.TraceService"

    def __init__(self) -> None:
        self.spans: list[tuple[str, str]] = []

    def handler(self) -> grpc.GenericRpcHandler:
        return grpc.method_handlers_generic_handler(
            self.SERVICE,
            {
                "Export": grpc.unary_unary_rpc_method_handler(
                    self.export,
                    request_deserializer=trace_service_pb2.ExportTraceServiceRequest.FromString,
                    response_serializer=(
                        trace_service_pb2.ExportTraceServiceResponse.SerializeToString
                    ),
                )
            },
        )

    async def export(self, request, context):
        for resource_spans in request.resource_spans:
            service = next(
                (
                    a.value.string_value
                    for a in resource_spans.resource.attributes
                    if a.key == "service.name"
                ),
                "",
            )
            scopes = next((v for f, v in resource_spans.ListFields() if f.number == 2), [])
            for scope in scopes:
                self.spans += [(span.trace_id.hex(), service) for span in scope.spans]
        return trace_service_pb2.ExportTraceServiceResponse()


def _get_traced(port: int, traceparent: str) -> tuple[int, dict]:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
    try:
        conn.request("GET", "/", headers={"Host": HOST, "traceparent": traceparent})
        resp = conn.getresponse()
        return resp.status, json.loads(resp.read())
    finally:
        conn.close()


async def test_traceparent_is_continued_and_spans_reach_the_collector(procs, mesh_home) -> None:
    receiver = Receiver()
    collector = grpc.aio.server()
    collector.add_generic_rpc_handlers((receiver.handler(),))
    collector_port = collector.add_insecure_port("127.0.0.1:0")
    await collector.start()
    plane = ControlPlane(
        ControlPlaneConfig(
            cluster="east",
            locality=Locality.parse(ZONE_A),
            xds_listen="127.0.0.1:0",
            api_listen="127.0.0.1:0",
            ca_dir=mesh_home / "trust",
            state_dir=mesh_home / "controlplanes" / "east",
            otlp_collector=f"127.0.0.1:{collector_port}",
        )
    )
    await plane.start()
    try:
        cp = InProcessPlane(plane, mesh_home)
        app_port, inbound = free_port(), free_port("127.0.1.10")
        start_echo(procs, "echo-1", app_port, "east")
        plane.registry.apply(
            load_documents(
                workload_yaml(
                    "echo-1",
                    service="echo",
                    address="127.0.1.10",
                    locality=ZONE_A,
                    port=8080,
                    target_port=app_port,
                    inbound_port=inbound,
                )
            )
        )
        port = free_port()
        echo, client = await asyncio.gather(
            asyncio.to_thread(
                start_sidecar,
                procs,
                cp,
                name="echo-1",
                workload="echo-1",
                service_account="echo",
                locality=ZONE_A,
            ),
            asyncio.to_thread(
                start_sidecar,
                procs,
                cp,
                name="client",
                service_account="frontend",
                locality=ZONE_A,
                outbound_port=port,
            ),
        )
        await asyncio.gather(
            asyncio.to_thread(echo.wait_ready, 30), asyncio.to_thread(client.wait_ready, 30)
        )
        await asyncio.to_thread(wait_until, lambda: get(port, HOST)[0] == 200, 30, "echo")

        trace_id = secrets.token_hex(16)
        caller_span = secrets.token_hex(8)
        status, body = await asyncio.to_thread(_get_traced, port, f"00-{trace_id}-{caller_span}-01")
        assert status == 200
        # the app sees the caller's trace, as a child of a sidecar's span (not the caller's)
        version, seen_trace, parent, flags = body["traceparent"].split("-")
        assert (version, seen_trace, flags) == ("00", trace_id, "01")
        assert parent != caller_span
        # both sidecars send their span of it to the collector (Envoy flushes every 5 s)
        deadline = time.monotonic() + 30
        while {s for t, s in receiver.spans if t == trace_id} != {"frontend.demo", "echo.demo"}:
            assert time.monotonic() < deadline, f"spans of {trace_id}: {receiver.spans}"
            await asyncio.sleep(0.2)
        # a request without a traceparent starts a trace
        status, body, _ = await asyncio.to_thread(get, port, HOST)
        assert status == 200 and body["traceparent"].startswith("00-")
    finally:
        await plane.stop()
        await collector.stop(None)
