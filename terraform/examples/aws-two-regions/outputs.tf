output "localities" {
  description = "meshfed locality of each member."
  value       = { (module.use1.cluster_name) = module.use1.locality, (module.euw1.cluster_name) = module.euw1.locality }
}

output "join_token_files" {
  description = "Where each member's join token was written."
  value       = module.federation.join_token_files
}

output "installed" {
  description = "Members meshfed was installed into."
  value       = module.federation.installed
}
