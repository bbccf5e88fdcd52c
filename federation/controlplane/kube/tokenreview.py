"""A workload's first certificate on Kubernetes (issue #20): its projected service account
token (audience :data:`AUDIENCE`), checked by the cluster's TokenReview API
(``authentication.k8s.io/v1``), binds the CSR to the token's namespace and service account.

A token is accepted when the API server says it is authenticated, for the audience
``meshfed``, and its user is ``system:serviceaccount:<namespace>:<name>``; the SPIFFE ID asked
for must then be ``spiffe://<td>/ns/<namespace>/sa/<name>``. Anything else is refused with
the reason (never the token) and nothing is signed.
"""

from __future__ import annotations

import logging

import aiohttp
from kubernetes_asyncio import client as k8s
from kubernetes_asyncio.client.exceptions import ApiException

from federation.ca.tokens import TokenRefusedError

log = logging.getLogger(__name__)

#: The audience a projected token for meshfed must carry (``serviceAccountToken.audience``).
AUDIENCE = "meshfed"
_PREFIX = "system:serviceaccount:"


def service_account_of(username: str) -> tuple[str, str] | None:
    """``(namespace, name)`` of ``system:serviceaccount:<ns>:<name>``, else None."""
    if not username.startswith(_PREFIX):
        return None
    parts = username[len(_PREFIX) :].split(":")
    return (parts[0], parts[1]) if len(parts) == 2 and all(parts) else None


class TokenReviewer:
    """Checks service account tokens with the TokenReview API.

    Args:
        api: a ``kubernetes_asyncio`` ApiClient whose credentials may create TokenReviews
            (ClusterRole ``system:auth-delegator``).
    """

    def __init__(self, api: k8s.ApiClient) -> None:
        self._auth = k8s.AuthenticationV1Api(api)

    async def review(self, token: str) -> tuple[str, str]:
        """``(namespace, service account)`` the token belongs to.

        Raises:
            TokenRefusedError: not authenticated, not for :data:`AUDIENCE`, not a service
                account's, or the API server could not be asked.
        """
        body = k8s.V1TokenReview(spec=k8s.V1TokenReviewSpec(token=token, audiences=[AUDIENCE]))
        try:
            answer = await self._auth.create_token_review(body, _request_timeout=10)
        except (ApiException, aiohttp.ClientError, OSError, TimeoutError) as err:
            reason = getattr(err, "reason", err.__class__.__name__)
            raise TokenRefusedError(f"the token could not be reviewed ({reason})") from err
        status = answer.status
        if status is None or not status.authenticated:
            error = (status.error if status is not None else None) or "not authenticated"
            raise TokenRefusedError(f"service account token refused by TokenReview: {error}")
        if AUDIENCE not in (status.audiences or []):
            raise TokenRefusedError(f"service account token is not for the audience {AUDIENCE}")
        owner = service_account_of((status.user.username if status.user else "") or "")
        if owner is None:
            raise TokenRefusedError("the token is not a service account's")
        return owner
