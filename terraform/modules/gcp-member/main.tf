data "google_container_cluster" "this" {
  name     = var.cluster_name
  location = var.location
  project  = var.project
}

locals {
  region = length(split("-", var.location)) > 2 ? join("-", slice(split("-", var.location), 0, 2)) : var.location
  zones  = sort(data.google_container_cluster.this.node_locations)
}

resource "google_compute_address" "gateway" {
  name    = "meshfed-${var.cluster_name}-gateway"
  project = var.project
  region  = local.region
  labels  = var.labels
}
