# A VPC network a private GKE cluster and its load balancer work in: one regional subnetwork
# for the nodes with two secondary ranges (pods, Services: a VPC-native cluster), Private Google
# Access (nodes without public addresses pull images and reach Google APIs), and Cloud NAT on
# a reserved address for everything else the nodes call -- the federation controller, other
# clusters' gateways -- so the other members can admit that one address. The gateway's own
# passthrough load balancer needs no subnet of its own.
# Sources: https://cloud.google.com/kubernetes-engine/docs/concepts/alias-ips,
# https://cloud.google.com/nat/docs/gke-example.

resource "google_compute_network" "this" {
  #checkov:skip=CKV2_GCP_18:ingress is denied by the network's implied rule; GKE makes the rules its nodes and load balancers need (from each Service's loadBalancerSourceRanges), and gcp-member adds the sidecar injector's
  name                    = var.name
  project                 = var.project
  auto_create_subnetworks = false
  routing_mode            = "REGIONAL"
}

resource "google_compute_subnetwork" "nodes" {
  name                     = "${var.name}-nodes"
  project                  = var.project
  region                   = var.region
  network                  = google_compute_network.this.id
  ip_cidr_range            = var.nodes_cidr
  private_ip_google_access = true

  secondary_ip_range {
    range_name    = "pods"
    ip_cidr_range = var.pods_cidr
  }

  secondary_ip_range {
    range_name    = "services"
    ip_cidr_range = var.services_cidr
  }

  # flow logs, sampled: what crossed zones and regions is what the cost report is checked against
  log_config {
    aggregation_interval = "INTERVAL_5_SEC"
    flow_sampling        = 0.5
    metadata             = "INCLUDE_ALL_METADATA"
  }
}

resource "google_compute_router" "this" {
  name    = var.name
  project = var.project
  region  = var.region
  network = google_compute_network.this.id
}

resource "google_compute_address" "nat" {
  name    = "${var.name}-nat"
  project = var.project
  region  = var.region
  labels  = var.labels
}

resource "google_compute_router_nat" "this" {
  name                               = var.name
  project                            = var.project
  region                             = var.region
  router                             = google_compute_router.this.name
  nat_ip_allocate_option             = "MANUAL_ONLY"
  nat_ips                            = [google_compute_address.nat.self_link]
  source_subnetwork_ip_ranges_to_nat = "LIST_OF_SUBNETWORKS"

  subnetwork {
    name                    = google_compute_subnetwork.nodes.id
    source_ip_ranges_to_nat = ["ALL_IP_RANGES"]
  }

  log_config {
    enable = true
    filter = "ERRORS_ONLY"
  }
}
