"""Cloud providers behind one interface (AWS, GCP, local): cluster discovery, localities and
egress price tables."""
