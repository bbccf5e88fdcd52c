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

output "gateway_dns_name" {
  description = "DNS name of the gateway's Network Load Balancer (or of the Route53 record)."
  value       = length(aws_route53_record.gateway) > 0 ? aws_route53_record.gateway[0].fqdn : aws_lb.gateway.dns_name
}

output "gateway_address" {
  description = "host:port other members dial: meshfed cluster join --gateway."
  value       = "${length(aws_route53_record.gateway) > 0 ? aws_route53_record.gateway[0].fqdn : aws_lb.gateway.dns_name}:${var.gateway_port}"
}

output "gateway_target_group_arn" {
  description = "Target group to register the gateway pods in (IP targets)."
  value       = aws_lb_target_group.gateway.arn
}

output "gateway_security_group_id" {
  description = "Security group allowing the gateway port from gateway_allowed_cidrs only."
  value       = aws_security_group.gateway.id
}

output "member" {
  description = "Everything the federation module needs to join this member."
  value = {
    name     = var.cluster_name
    locality = "aws/${data.aws_region.current.name}/${local.zones[0]}"
    network  = var.vpc_id
    gateway  = "${length(aws_route53_record.gateway) > 0 ? aws_route53_record.gateway[0].fqdn : aws_lb.gateway.dns_name}:${var.gateway_port}"
    provider = "aws"
  }
}
