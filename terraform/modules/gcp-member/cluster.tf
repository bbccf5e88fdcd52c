# With create_cluster: a private, VPC-native GKE Standard cluster on the subnetwork of
# gcp-network, and a node pool that can run meshfed (the gateway's two replicas spread over
# zones; pods of injected namespaces need NET_ADMIN for capture, which Standard allows and
# Autopilot does not without an allowlist).
#
# - nodes have no public address (private_cluster_config) and leave through the network's
#   Cloud NAT; the API endpoint stays public but for api_allowed_cidrs, so that
#   `terraform apply` (meshfed install --apply) reaches it;
# - Workload Identity (GKE_METADATA on the nodes: pods cannot read the node's credentials);
#   the nodes run as a service account of their own with the roles GKE's hardening guide
#   names, not the Compute Engine default one;
# - GKE Dataplane V2 (network policy enforced), shielded nodes with secure boot, release
#   channel REGULAR, auto repair and upgrade; Secrets encrypted with kms_key_name when given.
# - the one firewall rule GKE does not make: from the control plane's range to the nodes on
#   15017, the sidecar injector's port (a private cluster's control plane may reach nodes on
#   443 and 10250 only; Istio documents the same for its 15017).
# Sources: https://cloud.google.com/kubernetes-engine/docs/how-to/hardening-your-cluster,
# https://cloud.google.com/kubernetes-engine/docs/how-to/private-clusters#add_firewall_rules.

locals {
  node_tag = "meshfed-${var.cluster_name}-node"
}

resource "google_service_account" "nodes" {
  count        = var.create_cluster ? 1 : 0
  project      = var.project
  account_id   = substr("meshfed-${var.cluster_name}-nodes", 0, 30)
  display_name = "GKE nodes of ${var.cluster_name} (meshfed)"
}

resource "google_project_iam_member" "nodes" {
  for_each = var.create_cluster ? toset([
    "roles/logging.logWriter",
    "roles/monitoring.metricWriter",
    "roles/monitoring.viewer",
    "roles/stackdriver.resourceMetadata.writer",
    "roles/artifactregistry.reader",
  ]) : toset([])
  project = var.project
  role    = each.value
  member  = "serviceAccount:${google_service_account.nodes[0].email}"
}

resource "google_container_cluster" "this" {
  #checkov:skip=CKV_GCP_18:the API endpoint stays public so that `terraform apply` (meshfed install --apply) reaches it from the operator's machine; master_authorized_networks_config narrows it to api_allowed_cidrs
  #checkov:skip=CKV_GCP_66:Binary Authorization needs an attestor and policy of the operator's own; meshfed installs by digest (meshfed install --image REPO@sha256:...)
  #checkov:skip=CKV_GCP_24:PodSecurityPolicy was removed in Kubernetes 1.25; meshfed's own pods pass Pod Security "restricted" (namespace labels)
  #checkov:skip=CKV_GCP_65:Google Groups for RBAC needs a Workspace domain of the operator's own
  #checkov:skip=CKV_GCP_20:master_authorized_networks_config is set from api_allowed_cidrs (its default, 0.0.0.0/0, because the operator's address is not known here)
  count    = var.create_cluster ? 1 : 0
  name     = var.cluster_name
  project  = var.project
  location = var.location

  network    = var.network
  subnetwork = var.subnetwork
  ip_allocation_policy {
    cluster_secondary_range_name  = var.pods_range_name
    services_secondary_range_name = var.services_range_name
  }

  # node pools are managed below, not with the cluster
  remove_default_node_pool = true
  initial_node_count       = 1

  min_master_version  = var.kubernetes_version
  deletion_protection = var.deletion_protection
  datapath_provider   = "ADVANCED_DATAPATH"

  release_channel {
    channel = "REGULAR"
  }

  private_cluster_config {
    enable_private_nodes    = true
    enable_private_endpoint = false
    master_ipv4_cidr_block  = var.master_cidr
  }

  master_authorized_networks_config {
    dynamic "cidr_blocks" {
      for_each = var.api_allowed_cidrs
      content {
        cidr_block   = cidr_blocks.value
        display_name = "api-allowed-${cidr_blocks.key}"
      }
    }
  }

  workload_identity_config {
    workload_pool = "${var.project}.svc.id.goog"
  }

  enable_shielded_nodes       = true
  enable_intranode_visibility = true
  enable_legacy_abac          = false

  master_auth {
    client_certificate_config {
      issue_client_certificate = false
    }
  }

  dynamic "database_encryption" {
    for_each = var.kms_key_name == null ? [] : [var.kms_key_name]
    content {
      state    = "ENCRYPTED"
      key_name = database_encryption.value
    }
  }

  resource_labels = var.labels

  lifecycle {
    precondition {
      condition     = var.subnetwork != null
      error_message = "create_cluster needs subnetwork (gcp-network's subnetwork output)."
    }
  }
}

resource "google_container_node_pool" "this" {
  count    = var.create_cluster ? 1 : 0
  name     = "meshfed"
  project  = var.project
  location = var.location
  cluster  = google_container_cluster.this[0].name

  autoscaling {
    min_node_count = var.node_pool.min_count
    max_node_count = var.node_pool.max_count
  }

  management {
    auto_repair  = true
    auto_upgrade = true
  }

  node_config {
    machine_type    = var.node_pool.machine_type
    disk_size_gb    = var.node_pool.disk_size_gb
    image_type      = "COS_CONTAINERD"
    service_account = google_service_account.nodes[0].email
    oauth_scopes    = ["https://www.googleapis.com/auth/cloud-platform"]
    tags            = [local.node_tag]
    labels          = var.labels

    metadata = {
      disable-legacy-endpoints = "true"
    }

    workload_metadata_config {
      mode = "GKE_METADATA"
    }

    shielded_instance_config {
      enable_secure_boot          = true
      enable_integrity_monitoring = true
    }
  }
}

resource "google_compute_firewall" "injector" {
  count       = var.create_cluster ? 1 : 0
  name        = "meshfed-${var.cluster_name}-injector"
  project     = var.project
  network     = var.network
  description = "GKE control plane to meshfed's sidecar injector (admission webhook, 443 -> 15017)"
  direction   = "INGRESS"

  source_ranges = [var.master_cidr]
  target_tags   = [local.node_tag]

  allow {
    protocol = "tcp"
    ports    = ["15017"]
  }
}
