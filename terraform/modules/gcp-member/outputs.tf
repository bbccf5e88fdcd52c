output "locality" {
  description = "meshfed locality: gcp/<region>/<first node zone>."
  value       = "gcp/${local.region}/${local.zones[0]}"
}

output "gateway_address" {
  description = "host:port of the gateway: the reserved address, whose name meshfed install --gateway-ip gives the gateway Service (GKE annotation networking.gke.io/load-balancer-ip-addresses)."
  value       = "${google_compute_address.gateway.address}:15443"
}

output "member" {
  description = "Everything the federation module needs to join this member."
  value = {
    name                  = var.cluster_name
    locality              = "gcp/${local.region}/${local.zones[0]}"
    network               = var.network
    gateway               = "${google_compute_address.gateway.address}:15443"
    provider              = "gcp"
    gateway_allowed_cidrs = var.gateway_allowed_cidrs
    gateway_ip            = google_compute_address.gateway.name
  }
}
