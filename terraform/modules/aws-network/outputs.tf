output "vpc_id" {
  description = "The VPC's id (meshfed's network name for the member)."
  value       = aws_vpc.this.id
}

output "public_subnet_ids" {
  description = "Public subnets, in the order of var.zones (internet-facing load balancers)."
  value       = [for z in var.zones : aws_subnet.public[z].id]
}

output "private_subnet_ids" {
  description = "Private subnets, in the order of var.zones (nodes and pods)."
  value       = [for z in var.zones : aws_subnet.private[z].id]
}

output "nat_public_ip" {
  description = "The address the cluster's egress leaves from: what the other members' gateway_allowed_cidrs must admit (as /32)."
  value       = aws_eip.nat.public_ip
}
