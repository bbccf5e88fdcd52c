"""Workload identity: the certificate service of a cluster control plane, its workload tokens,
and the workload side that keeps an SVID fresh in a directory (keys never leave it)."""
