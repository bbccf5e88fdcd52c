#!/usr/bin/env bash
# The root-of-trust walkthrough (`make demo` until `meshfed up` lands).
# Creates a throwaway MESHFED_HOME, a root CA, two cluster intermediates, an SVID per cluster,
# verifies each chain with openssl, then rotates the root without breaking either SVID.
set -euo pipefail
export MESHFED_HOME="${MESHFED_HOME:-$(mktemp -d -t meshfed-demo.XXXXXX)}"
T="$MESHFED_HOME/trust"
step() { printf '\n\033[1m== %s\033[0m\n' "$*"; }

step "1. Root of trust for example.org"
meshfed trust init --trust-domain example.org
step "2. One intermediate CA per cluster"
meshfed trust intermediate --cluster aws-us-east-1
meshfed trust intermediate --cluster gcp-europe-west1
step "3. Workload SVIDs"
meshfed trust issue --cluster aws-us-east-1 --spiffe-id spiffe://example.org/ns/demo/sa/frontend --out "$MESHFED_HOME/svids/frontend"
meshfed trust issue --cluster gcp-europe-west1 --spiffe-id spiffe://example.org/ns/demo/sa/echo --out "$MESHFED_HOME/svids/echo"
step "4. Both chain to the one root (openssl verify)"
openssl verify -CAfile "$T/bundle.pem" -untrusted "$T/intermediates/aws-us-east-1/ca.pem" "$MESHFED_HOME/svids/frontend/svid.pem"
openssl verify -CAfile "$T/bundle.pem" -untrusted "$T/intermediates/gcp-europe-west1/ca.pem" "$MESHFED_HOME/svids/echo/svid.pem"
step "5. A bad SPIFFE ID is refused (exit code 2)"
set +e
meshfed trust issue --cluster aws-us-east-1 --spiffe-id spiffe://Example.org/ns/demo/sa/x --out "$MESHFED_HOME/svids/bad"
echo "exit code: $?"
set -e
step "6. Root rotation, step 1: both roots trusted, intermediates re-issued"
cp "$T/intermediates/aws-us-east-1/ca.pem" "$MESHFED_HOME/old-intermediate.pem"
meshfed trust rotate-root
openssl verify -CAfile "$T/bundle.pem" -untrusted "$MESHFED_HOME/old-intermediate.pem" "$MESHFED_HOME/svids/frontend/svid.pem"
step "7. The SPIFFE bundle (JWK Set) now holds two roots"
meshfed trust bundle -o spiffe | head -20
echo "(files under $MESHFED_HOME)"
