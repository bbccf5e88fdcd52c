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

output "load_balancer_controller_roles" {
  description = "Per cluster, the IAM role the AWS Load Balancer Controller's service account assumes (its Helm chart's serviceAccount annotation)."
  value = {
    (module.use1.cluster_name) = module.use1.load_balancer_controller_role_arn
    (module.euw1.cluster_name) = module.euw1.load_balancer_controller_role_arn
  }
}
