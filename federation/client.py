"""A small client for meshfed's HTTP APIs (cluster control planes and the controller).

Control planes (HTTPS, with a certificate from the cluster's CA): the bearer token comes
from ``--token``/``$MESHFED_TOKEN``, else from the ``endpoint.json`` files they write under
``$MESHFED_HOME``, which also name the trust bundle their certificate chains to and the DNS
name it carries (``controlplane.<cluster>.cluster.meshfed.internal``); for a control plane
elsewhere, ``$MESHFED_CA_FILE`` names the bundle and ``$MESHFED_SERVER_NAME`` that name.
The controller: its URL and token come from ``--controller``/``$MESHFED_CONTROLLER`` and
``--token``/``$MESHFED_TOKEN``, else from ``$MESHFED_HOME/config.yaml`` (written by
``meshfed controller serve``), which also names the CA the controller's HTTPS certificate
chains to (``caFile``, the federation's trust bundle) and the DNS name it carries
(``serverName``). A controller URL may name several replicas, comma-separated: :func:`call`
tries them in order while one is unreachable or answers 503. Errors are
:mod:`federation.errors` exceptions.
"""

from __future__ import annotations

import asyncio
import http
import json
import os
import ssl
import urllib.parse
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
import yaml

from federation.errors import ApiError, ConfigError, InvalidDocumentError, UnreachableError
from federation.paths import meshfed_home

TOKEN_ENV = "MESHFED_TOKEN"
#: A CA bundle (PEM file) to verify an https API that config.yaml does not describe.
CA_FILE_ENV = "MESHFED_CA_FILE"
#: The DNS name such an API's certificate carries, when it is not the host dialled.
SERVER_NAME_ENV = "MESHFED_SERVER_NAME"
CONFIG_FILE = "config.yaml"


def cli_config_path(home: Path | None = None) -> Path:
    """``$MESHFED_HOME/config.yaml``."""
    return (home or meshfed_home()) / CONFIG_FILE


def _config(home: Path | None) -> dict[str, Any]:
    path = cli_config_path(home)
    if not path.exists():
        return {}
    try:
        loaded = yaml.safe_load(path.read_text())
    except (OSError, yaml.YAMLError) as err:
        raise ApiError(f"{path}: cannot read ({err})", status=0) from err
    return loaded if isinstance(loaded, dict) else {}


@dataclass(frozen=True, slots=True)
class ClientTls:
    """How to verify an HTTPS API: ``context`` (CA), and the DNS name its certificate must
    carry when it differs from the host dialled (``server_hostname``)."""

    context: ssl.SSLContext
    server_hostname: str | None = None


def tls_context(ca_pem: bytes | None = None, ca_file: str | None = None) -> ssl.SSLContext:
    """A client context trusting ``ca_pem`` / ``ca_file`` (the system's CAs when neither)."""
    if ca_pem is None and ca_file is None:
        return ssl.create_default_context()
    return ssl.create_default_context(
        cafile=ca_file, cadata=ca_pem.decode() if ca_pem is not None else None
    )


def unverified_tls() -> ClientTls:
    """TLS that does not verify the server: only for reading public facts (a trust bundle)
    that what follows then pins or checks -- kubeadm's discovery."""
    context = ssl.create_default_context()
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    return ClientTls(context)


def split_urls(value: str) -> list[str]:
    """``"https://a:1, https://b:2/"`` -> ``["https://a:1", "https://b:2"]``."""
    return [u.strip().rstrip("/") for u in value.split(",") if u.strip()]


def _endpoints(home: Path | None) -> Iterator[tuple[Path, dict[str, Any]]]:
    """Each readable ``endpoint.json`` under ``home/controlplanes`` (``$MESHFED_HOME`` by
    default), in path order, with its directory."""
    base = (home or meshfed_home()) / "controlplanes"
    for endpoint in sorted(base.glob("*/endpoint.json")) if base.is_dir() else []:
        try:
            data = json.loads(endpoint.read_text())
        except (OSError, ValueError):
            continue
        if isinstance(data, dict):
            yield endpoint.parent, data


def local_control_plane(url: str, home: Path | None) -> dict[str, Any] | None:
    """The ``endpoint.json`` of the control plane serving ``url`` under ``home``, or None."""
    return next(
        (d for _, d in _endpoints(home) if str(d.get("api", "")).rstrip("/") == url.rstrip("/")),
        None,
    )


def tls_for(url: str, home: Path | None = None) -> ClientTls | None:
    """How to verify ``url``: None for http; for the controller named in ``config.yaml``, its
    ``caFile`` and ``serverName``; for a control plane that wrote an ``endpoint.json`` under
    ``home``, its ``bundle_file`` and ``server_name``; else ``$MESHFED_CA_FILE`` (the system's
    CAs without it) and ``$MESHFED_SERVER_NAME``.

    Raises:
        ApiError: the CA file cannot be read.
    """
    if not url.startswith("https://"):
        return None
    config = _config(home)
    ca_file, name = os.environ.get(CA_FILE_ENV), os.environ.get(SERVER_NAME_ENV) or None
    configured = split_urls(str(config.get("controller", "")))
    plane = None if url.rstrip("/") in configured else local_control_plane(url, home)
    if url.rstrip("/") in configured and config.get("caFile"):
        ca_file, name = str(config["caFile"]), config.get("serverName")
    elif plane is not None and plane.get("bundle_file"):
        ca_file, name = str(plane["bundle_file"]), plane.get("server_name")
    try:
        return ClientTls(tls_context(ca_file=ca_file), name)
    except (OSError, ssl.SSLError) as err:
        raise ApiError(f"{ca_file}: cannot load the CA ({err})", status=0) from err


def local_control_planes(home: Path | None = None) -> dict[str, str]:
    """Cluster -> API URL of every control plane that wrote an ``endpoint.json`` under
    ``home/controlplanes`` (``$MESHFED_HOME`` by default), sorted by cluster."""
    return {
        str(data.get("cluster") or directory.name): str(data["api"])
        for directory, data in _endpoints(home)
        if data.get("api")
    }


def named_after(err: ApiError | InvalidDocumentError, filename: str) -> Exception:
    """The API's refusal of documents read from the one file ``filename``, naming it where
    the server says ``request body`` (it never saw the name); unchanged for ``-`` (stdin) or
    a directory, whose documents the server numbers across its files."""
    if filename == "-" or Path(filename).is_dir():
        return err
    named = str(err).replace("request body: ", f"{filename}: ", 1)
    if isinstance(err, InvalidDocumentError):
        problems = [p.replace("request body: ", f"{filename}: ", 1) for p in err.problems]
        return InvalidDocumentError(named, problems=problems)
    return ApiError(named, status=err.status)


def control_planes_to_ask(url: str | None) -> dict[str, str]:
    """Cluster -> API URL: ``url`` alone (its cluster from a local ``endpoint.json``, else
    ``-``), or without it every local control plane (:func:`local_control_planes`).

    Raises:
        ConfigError: no ``url`` and none here (exit 2).
    """
    if url:
        return {str((local_control_plane(url, None) or {}).get("cluster", "-")): url}
    planes = local_control_planes()
    if not planes:
        raise ConfigError(f"no control plane under {meshfed_home()}; pass --controlplane URL")
    return planes


def controlplane_api_of(cluster: str, flag: str = "--from") -> str:
    """The API URL of ``cluster``'s local control plane (its ``endpoint.json`` under
    ``$MESHFED_HOME/controlplanes``).

    Raises:
        ConfigError: no such file (naming ``flag``; exit 2).
    """
    endpoint = meshfed_home() / "controlplanes" / cluster / "endpoint.json"
    try:
        return str(json.loads(endpoint.read_text())["api"])
    except (OSError, ValueError, KeyError) as err:
        raise ConfigError(
            f"{flag} {cluster}: no control plane endpoint in {endpoint}; pass --controlplane URL"
        ) from err


def controller_target(
    url: str | None, token: str | None, home: Path | None = None
) -> tuple[str, str | None]:
    """The controller's API URL and admin token: flags/env first, then ``config.yaml``.

    Raises:
        ApiError: no URL given and no readable ``config.yaml`` (status 0; names the fix).
    """
    path = cli_config_path(home)
    config = _config(home)
    url = url or config.get("controller")
    if not url:
        raise ApiError(
            f"no controller: pass --controller URL, set MESHFED_CONTROLLER, or start one"
            f" ('meshfed controller serve' writes {path})",
            status=0,
        )
    same = set(split_urls(str(url))) <= set(split_urls(str(config.get("controller", ""))))
    if not token and config.get("tokenFile") and same:
        try:
            token = Path(config["tokenFile"]).read_text().strip()
        except OSError as err:
            raise ApiError(f"{config['tokenFile']}: {err.strerror}", status=0) from err
    return str(url), token


def find_token(url: str, explicit: str | None = None, home: Path | None = None) -> str | None:
    """The token for ``url``: ``explicit``, ``$MESHFED_TOKEN``, or a matching endpoint.json."""
    if explicit:
        return explicit
    if os.environ.get(TOKEN_ENV):
        return os.environ[TOKEN_ENV]
    plane = local_control_plane(url, home)
    if plane is None:
        return None
    try:
        return Path(plane["token_file"]).read_text().strip()
    except (OSError, KeyError, TypeError):
        return None


async def request_json(
    method: str,
    url: str,
    token: str | None,
    body: str | None = None,
    *,
    token_hint: bool = True,
    tls: ClientTls | None = None,
) -> Any:
    """One request to ``url``; the decoded JSON answer (errors as :func:`call` says).

    ``token_hint``: on 401, tell the user how to pass the admin token. ``tls``: how to verify
    an https URL (default: the system's CAs).
    """
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    extra: dict[str, Any] = {}
    if tls is not None:
        extra["ssl"] = tls.context
        if tls.server_hostname:
            extra["server_hostname"] = tls.server_hostname
    try:
        async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=30)) as session:
            async with session.request(method, url, data=body, headers=headers, **extra) as resp:
                text = await resp.text()
                try:
                    data = json.loads(text) if text else {}
                except ValueError:
                    data = {"error": text}
                if resp.status == 400 and "problems" in data:
                    raise InvalidDocumentError(data["error"], problems=data["problems"])
                if resp.status >= 400:
                    hint = (
                        " (pass --token or set MESHFED_TOKEN)"
                        if resp.status == 401 and token_hint
                        else ""
                    )
                    raise ApiError(api_error_message(url, resp.status, data, text) + hint,
                                   status=resp.status)  # fmt: skip
                return data
    except aiohttp.ClientConnectorCertificateError as err:
        raise ApiError(
            f"{url}: its certificate is not trusted ({err.certificate_error}); pass the"
            f" federation's bundle (config.yaml caFile, or {CA_FILE_ENV})",
            status=0,
        ) from err
    except aiohttp.ClientConnectionError as err:
        raise UnreachableError(f"cannot reach {url}: {unreachable_reason(err)}", status=0) from err
    except TimeoutError as err:
        raise UnreachableError(f"cannot reach {url}: no answer within 30 s", status=0) from err


def api_error_message(url: str, status: int, data: dict[str, Any], text: str) -> str:
    """What an API's refusal says to a person: the server's own message for a 4xx (it names
    what was wrong; the API's URL and path are internals the user did not type, as kubectl's
    ``Error from server (NotFound)``), with the status, and which server failed for a 5xx."""
    message = str(data.get("error") or text or "no message").strip()
    try:
        phrase = f"{status} {http.HTTPStatus(status).phrase}"
    except ValueError:
        phrase = str(status)
    if status < 500:
        return f"{message} ({phrase})"
    server = urllib.parse.urlsplit(url)
    return f"{server.scheme}://{server.netloc} failed ({phrase}): {message}"


def unreachable_reason(err: aiohttp.ClientConnectionError) -> str:
    """Why a connection failed, for a person: the operating system's reason (``connection
    refused``, ``no route to host``, a name that does not resolve), without aiohttp's
    internals (its message names the connection key and the ``ssl.SSLContext`` object)."""
    if isinstance(err, aiohttp.ClientConnectorDNSError):
        return "the host name does not resolve"
    if isinstance(err, aiohttp.ClientConnectorError):
        os_error = err.os_error
        if os_error.errno is not None:
            return os.strerror(os_error.errno).lower()
        if isinstance(os_error, TimeoutError):
            return "no answer (timed out)"
        return str(os_error) or type(os_error).__name__
    if isinstance(err, aiohttp.ServerDisconnectedError):
        return "the server closed the connection"
    return str(err) or type(err).__name__


def call(
    method: str,
    base_url: str,
    path: str,
    *,
    token: str | None = None,
    body: str | None = None,
    home: Path | None = None,
    tls: ClientTls | None = None,
) -> Any:
    """Synchronous request to ``base_url + path``; returns the decoded JSON. An https URL is
    verified with ``tls``, else as :func:`tls_for` says (``home``: where ``config.yaml``
    is). ``base_url`` may name several replicas, comma-separated: the next is tried when one
    cannot be reached or answers 503 (a replica that lost its database). A write whose
    answer was lost may then be sent twice: ``apply`` and ``delete`` are idempotent, a second
    ``cluster join`` answers 409.

    Raises:
        InvalidDocumentError: the server refused documents (400 with problems).
        ApiError: any other error status (401 names the missing token).
        UnreachableError: no URL could be reached (retryable).
    """
    urls = split_urls(base_url)
    for i, one in enumerate(urls):
        verify = tls or tls_for(one, home)
        try:
            return asyncio.run(
                request_json(method, one + path, find_token(one, token, home), body, tls=verify)
            )
        except ApiError as err:
            if i == len(urls) - 1 or not (isinstance(err, UnreachableError) or err.status == 503):
                raise
    raise UnreachableError(f"no controller URL in {base_url!r}", status=0)
