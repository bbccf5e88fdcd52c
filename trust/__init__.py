"""meshfed's root of trust: SPIFFE identities, certificate authorities, SVIDs and trust bundles.

Public surface (import from the submodules):

- :mod:`trust.spiffe` -- ``TrustDomain`` and ``SpiffeId`` value objects (SPIFFE ID spec).
- :mod:`trust.svid` -- ``X509Svid``: a leaf certificate, its chain and its private key.
- :mod:`trust.bundle` -- ``TrustBundle``: the roots of a trust domain, PEM and SPIFFE bundle format.
- :mod:`trust.pki` -- pure PKI helpers: keys, certificate templates, renewal times.
- :mod:`trust.authority` -- the ``CertificateAuthority`` / ``RootAuthority`` interfaces and the
  local (key-in-a-file) implementations.
- :mod:`trust.store` -- the on-disk trust directory (``meshfed trust init`` and friends).
- :mod:`trust.rotation` -- SVID renewal at half life, and root rotation.
- :mod:`trust.errors` -- the exception tree.
"""
