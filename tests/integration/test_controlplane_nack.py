"""NACK handling with a real Envoy: an invalid resource is rejected, recorded, shown by
``meshfed proxy-status``, and Envoy keeps serving its last good configuration.

The control plane runs in-process so the test can publish a deliberately invalid (but
reference-consistent) snapshot straight into its cache; Envoy and the CLI are real processes.
"""

from __future__ import annotations

import asyncio
import json
import time

import aiohttp
import pytest
from envoy.config.cluster.v3 import cluster_pb2

from federation.client import request_json, tls_for
from federation.controlplane import resource
from federation.controlplane.server import ControlPlane, ControlPlaneConfig
from federation.controlplane.snapshot import Snapshot
from federation.model.documents import load_documents
from federation.model.locality import Locality
from tests.integration.harness import (
    MESHFED,
    InProcessPlane,
    free_port,
    get,
    meshfed_env,
    start_echo,
    start_sidecar,
    wait_until,
    workload_yaml,
)
from tests.prometheus import Samples, samples

pytestmark = [pytest.mark.integration, pytest.mark.slow]
ZONE_A = "aws/us-east-1/us-east-1a"
HOST = "echo.demo.svc.clusterset.local"


async def _proxy_status(home, api_url) -> list[dict]:
    proc = await asyncio.create_subprocess_exec(
        MESHFED,
        "proxy-status",
        "--controlplane",
        api_url,
        "-o",
        "json",
        env=meshfed_env(home),
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(proc.communicate(), 30)
    assert proc.returncode == 0, err
    return json.loads(out)


async def _table(home, api_url) -> str:
    proc = await asyncio.create_subprocess_exec(
        MESHFED,
        "proxy-status",
        "--controlplane",
        api_url,
        env=meshfed_env(home),
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, _ = await asyncio.wait_for(proc.communicate(), 30)
    return out.decode()


async def _metrics(plane: ControlPlane, token: str | None = None) -> Samples:
    """The control plane's ``/metrics``, parsed."""
    headers = {"Authorization": f"Bearer {token if token is not None else plane.token}"}
    tls = tls_for(plane.api_url, plane.config.state_dir.parent.parent)
    assert tls is not None
    async with (
        aiohttp.ClientSession() as session,
        session.get(
            f"{plane.api_url}/metrics",
            headers=headers,
            ssl=tls.context,
            server_hostname=tls.server_hostname,
        ) as resp,
    ):
        if resp.status != 200:
            return {("status", ()): float(resp.status)}
        return samples(await resp.text())


async def test_nack_is_recorded_and_envoy_keeps_last_good_config(procs, mesh_home) -> None:
    plane = ControlPlane(
        ControlPlaneConfig(
            cluster="east",
            locality=Locality.parse(ZONE_A),
            xds_listen="127.0.0.1:0",
            api_listen="127.0.0.1:0",
            ca_dir=mesh_home / "trust",
            state_dir=mesh_home / "controlplanes" / "east",
            # no health checks: a probe result would rebuild the snapshot and replace the
            # broken one before Envoy sees it (the test publishes snapshots itself)
            health_checks=False,
        )
    )
    await plane.start()
    try:
        app_port = free_port()
        start_echo(procs, "echo-1", app_port, "east")
        # no sidecar in front of this app: tlsMode disabled, plain HTTP from the client sidecar
        plane.registry.apply(
            load_documents(
                workload_yaml(
                    "echo-1",
                    service="echo",
                    address="127.0.0.1",
                    locality=ZONE_A,
                    port=8080,
                    target_port=app_port,
                    tls_mode="disabled",
                )
            )
        )
        port = free_port()
        client = await asyncio.to_thread(
            start_sidecar,
            procs,
            InProcessPlane(plane, mesh_home),
            name="client",
            service_account="frontend",
            locality=ZONE_A,
            outbound_port=port,
        )
        await asyncio.to_thread(client.wait_ready, 30)
        await asyncio.to_thread(wait_until, lambda: get(port, HOST)[0] == 200, 30, "first request")

        node = "sidecar~demo~client"
        good = plane.cache.get_snapshot(node)
        assert good is not None
        broken = {t: list(good.get(t).values()) for t in resource.PUSH_ORDER}
        bad_cluster = cluster_pb2.Cluster()
        bad_cluster.CopyFrom(broken[resource.CLUSTER][0])
        bad_cluster.connect_timeout.seconds = -1  # Envoy's proto validation: must be > 0s
        broken[resource.CLUSTER][0] = bad_cluster
        await plane.cache.set_snapshot(node, Snapshot.build(broken))

        async def cds_state() -> dict:
            """CDS of the client as the control plane's API reports it (what the CLI shows)."""
            data = await request_json(
                "GET",
                f"{plane.api_url}/v1/proxy-status",
                plane.token,
                tls=tls_for(plane.api_url, mesh_home),
            )
            rows = {p["node_id"]: p for p in data["proxies"]}
            return dict(rows[node]["types"]["CDS"])

        async def wait_cds(state: str, timeout_s: float = 30) -> dict:
            deadline = asyncio.get_running_loop().time() + timeout_s
            while (cds := await cds_state())["state"] != state:
                assert asyncio.get_running_loop().time() < deadline, f"CDS never {state}: {cds}"
                await asyncio.sleep(0.1)
            return cds

        cds = await wait_cds("NACKED")
        # ... and its metrics (issue #17): the NACK, the pushes, the proxy, its SVID
        metrics = await _metrics(plane)
        assert metrics[("meshfed_xds_nacks_total", (("type", "CDS"),))] == 1
        assert metrics[("meshfed_xds_pushes_total", (("type", "CDS"),))] >= 2
        assert metrics[("meshfed_xds_connected_proxies", (("role", "sidecar"),))] == 1
        assert metrics[("meshfed_svids_issued_total", (("via", "workload-token"),))] >= 1
        assert metrics[("meshfed_snapshot_builds_total", ())] >= 1
        assert metrics[("meshfed_workloads", (("health", "UNKNOWN"),))] == 1  # echo-1: no probes
        assert metrics[("meshfed_ca_certificate_expiry_timestamp_seconds", ())] > time.time()
        assert ("meshfed_sync_stream_up", ()) not in metrics  # not joined to a federation
        assert await _metrics(plane, token="wrong") == {("status", ()): 401.0}
        rows = {p["node_id"]: p for p in await _proxy_status(mesh_home, plane.api_url)}
        assert rows[node]["types"]["CDS"]["state"] == "NACKED"  # and the CLI says so
        assert "Expected positive duration" in cds["nack_error"]
        assert cds["acked_version"] == good.versions[resource.CLUSTER]
        assert "NACKED" in await _table(mesh_home, plane.api_url)
        # Envoy still serves with its last good config
        for _ in range(10):
            status, data, _ = await asyncio.to_thread(get, port, HOST)
            assert status == 200 and data["name"] == "echo-1"
        # the next good snapshot is accepted again
        plane.builder.mark_stale([node])
        await plane.builder.rebuild_all()

        await wait_cds("SYNCED")
        # a registry change reaches the proxy: one push latency observed
        plane.registry.apply(
            load_documents(
                workload_yaml(
                    "echo-2",
                    service="echo",
                    address="127.0.0.2",
                    locality=ZONE_A,
                    port=8080,
                    target_port=app_port,
                    tls_mode="disabled",
                )
            )
        )
        deadline = time.monotonic() + 30
        while (await _metrics(plane)).get(("meshfed_xds_push_latency_seconds_count", ()), 0) < 1:
            assert time.monotonic() < deadline, "no push latency observed"
            await asyncio.sleep(0.1)
    finally:
        await plane.stop()
