output "locality" {
  description = "meshfed locality: gcp/<region>/<first node zone>."
  value       = "gcp/${local.region}/${local.zones[0]}"
}

output "gateway_address" {
  description = "host:port of the gateway (the reserved address; give it to the gateway Service's loadBalancerIP)."
  value       = "${google_compute_address.gateway.address}:${var.gateway_port}"
}

output "member" {
  description = "Everything the federation module needs to join this member."
  value = {
    name     = var.cluster_name
    locality = "gcp/${local.region}/${local.zones[0]}"
    network  = var.network
    gateway  = "${google_compute_address.gateway.address}:${var.gateway_port}"
    provider = "gcp"
  }
}
