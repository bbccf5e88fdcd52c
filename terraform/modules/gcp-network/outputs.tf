output "network" {
  description = "The network's name (gcp-member's network, meshfed's network of the member)."
  value       = google_compute_network.this.name
}

output "subnetwork" {
  description = "The nodes' subnetwork's name (gcp-member's subnetwork)."
  value       = google_compute_subnetwork.nodes.name
}

output "pods_range_name" {
  description = "Secondary range of pod addresses."
  value       = "pods"
}

output "services_range_name" {
  description = "Secondary range of ClusterIP addresses."
  value       = "services"
}

output "nat_address" {
  description = "The one address the nodes' traffic leaves by: what other members' gateways admit (a /32)."
  value       = "${google_compute_address.nat.address}/32"
}
