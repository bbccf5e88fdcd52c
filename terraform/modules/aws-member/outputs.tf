output "cluster_name" {
  description = "The member's name."
  value       = var.cluster_name
}

output "cluster_endpoint" {
  description = "Kubernetes API endpoint of the EKS cluster."
  value       = var.create_cluster ? aws_eks_cluster.this[0].endpoint : data.aws_eks_cluster.existing[0].endpoint
}

output "locality" {
  description = "meshfed locality: aws/<region>/<first zone of the subnets>."
  value       = "aws/${data.aws_region.current.name}/${local.zones[0]}"
}

output "zones" {
  description = "Availability zones of the member's subnets, sorted."
  value       = local.zones
}

output "vpc_id" {
  description = "VPC id: meshfed's network for this member."
  value       = var.vpc_id
}

output "member" {
  description = "Everything the federation module needs to join this member and install meshfed into it. gateway is empty: the NLB is made by the cluster's load balancer controller from meshfed install's LoadBalancer Service, and the control plane reports its address."
  value = {
    name                  = var.cluster_name
    locality              = "aws/${data.aws_region.current.name}/${local.zones[0]}"
    network               = var.vpc_id
    gateway               = ""
    provider              = "aws"
    gateway_allowed_cidrs = var.gateway_allowed_cidrs
    gateway_ip            = ""
  }
}

output "load_balancer_controller_role_arn" {
  description = "The IAM role of the AWS Load Balancer Controller (IRSA), for its Helm chart: --set serviceAccount.annotations.eks\\.amazonaws\\.com/role-arn=<this>. null when not created."
  value       = local.create_lbc ? aws_iam_role.load_balancer_controller[0].arn : null
}

output "node_group" {
  description = "Name of the created managed node group (null: none)."
  value       = local.create_nodes ? aws_eks_node_group.this[0].node_group_name : null
}
