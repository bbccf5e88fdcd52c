output "gateways" {
  description = "Gateway address of each member."
  value       = { (module.use1.cluster_name) = module.use1.gateway_address, (module.euw1.cluster_name) = module.euw1.gateway_address }
}

output "localities" {
  description = "meshfed locality of each member."
  value       = { (module.use1.cluster_name) = module.use1.locality, (module.euw1.cluster_name) = module.euw1.locality }
}

output "join_token_files" {
  description = "Where each member's join token was written."
  value       = module.federation.join_token_files
}
