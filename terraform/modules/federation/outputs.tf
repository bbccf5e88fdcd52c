output "members" {
  description = "Names of the joined members."
  value       = sort(keys(terraform_data.member))
}

output "join_token_files" {
  description = "Per member, the file holding its one-time join token (JSON, 0600): pass it to the member's `meshfed controlplane serve --join-token`."
  value       = { for name, m in terraform_data.member : name => "${var.meshfed_home}/join-tokens/${name}.json" }
}

output "installed" {
  description = "Names of the members meshfed was installed into (those with a kubeconfig)."
  value       = sort(keys(terraform_data.install))
}
