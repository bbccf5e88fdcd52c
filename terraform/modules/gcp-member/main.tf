# A GKE cluster as a meshfed member: a reserved regional address for the east-west gateway's
# LoadBalancer Service and, with create_cluster, the cluster itself (cluster.tf). An existing
# cluster is read for its node zones.

data "google_container_cluster" "this" {
  count    = var.create_cluster ? 0 : 1
  name     = var.cluster_name
  location = var.location
  project  = var.project
}

locals {
  region = length(split("-", var.location)) > 2 ? join("-", slice(split("-", var.location), 0, 2)) : var.location
  zones = sort(var.create_cluster
    ? google_container_cluster.this[0].node_locations
  : data.google_container_cluster.this[0].node_locations)
}

resource "google_compute_address" "gateway" {
  name    = "meshfed-${var.cluster_name}-gateway"
  project = var.project
  region  = local.region
  labels  = var.labels
}
