"""AWS provider paths moto cannot serve, with botocore's Stubber (no network): error
translation (throttling, access denied)."""

from __future__ import annotations

import boto3
import pytest
from botocore.stub import Stubber

from providers.aws import AwsProvider
from providers.errors import AccessDeniedError, ProviderError, ThrottledError


def _client(service: str):
    return boto3.client(
        service, region_name="us-east-1", aws_access_key_id="x", aws_secret_access_key="y"
    )


@pytest.mark.parametrize(
    ("code", "error"),
    [("ThrottlingException", ThrottledError), ("AccessDeniedException", AccessDeniedError)],
)
def test_sdk_errors_are_translated(code: str, error: type) -> None:
    eks = _client("eks")
    stub = Stubber(eks)
    stub.add_client_error("describe_cluster", code, "no")
    with stub, pytest.raises(error) as raised:
        AwsProvider("us-east-1", client=lambda _s: eks).describe_cluster("c")
    assert raised.value.provider == "aws"
    assert raised.value.retryable == (error is ThrottledError)


def test_an_error_without_a_message_says_where_to_look() -> None:
    """Something that is not the AWS API (a proxy's 404, a wrong AWS_ENDPOINT_URL) answers
    without an AWS error body: the message names the endpoint settings, not '404:'."""
    eks = _client("eks")
    stub = Stubber(eks)
    stub.add_client_error("describe_cluster", "404", "", http_status_code=404)
    with (
        stub,
        pytest.raises(ProviderError, match=r"answered 404 with no message .*AWS_ENDPOINT_URL"),
    ):
        AwsProvider("us-east-1", client=lambda _s: eks).describe_cluster("c")
