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

resource "google_compute_firewall" "gateway" {
  name          = "meshfed-${var.cluster_name}-gateway"
  project       = var.project
  network       = var.network
  description   = "meshfed east-west gateway of ${var.cluster_name}: TCP ${var.gateway_port} from the federation only"
  direction     = "INGRESS"
  source_ranges = var.gateway_allowed_cidrs
  target_tags   = var.gateway_target_tags

  allow {
    protocol = "tcp"
    ports    = [tostring(var.gateway_port)]
  }
}
