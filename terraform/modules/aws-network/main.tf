# A VPC an EKS cluster and its load balancers work in: per zone a public subnet (the NLB of
# meshfed's east-west gateway; a route to the internet gateway) and a private subnet (nodes and
# pods; out through a NAT gateway), tagged as the AWS Load Balancer Controller discovers them
# (kubernetes.io/role/elb on public subnets for internet-facing load balancers,
# kubernetes.io/role/internal-elb on private ones; kubernetes.io/cluster/<name> = shared).
# Source: https://docs.aws.amazon.com/eks/latest/userguide/network-reqs.html and the AWS Load
# Balancer Controller's subnet discovery (docs/deploy/subnet_discovery.md).

locals {
  public  = { for i, z in var.zones : z => cidrsubnet(var.cidr_block, 4, i) }
  private = { for i, z in var.zones : z => cidrsubnet(var.cidr_block, 4, 8 + i) }
  cluster = { "kubernetes.io/cluster/${var.name}" = "shared" }
}

resource "aws_vpc" "this" {
  #checkov:skip=CKV2_AWS_11:flow logs cost money and need a destination (CloudWatch or S3) the operator chooses; add aws_flow_log to this VPC
  #checkov:skip=CKV2_AWS_12:nothing here uses the default security group; EKS and the load balancer controller make their own
  cidr_block           = var.cidr_block
  enable_dns_support   = true
  enable_dns_hostnames = true # EKS nodes register by DNS name
  tags                 = merge(var.tags, { Name = var.name })
}

resource "aws_internet_gateway" "this" {
  vpc_id = aws_vpc.this.id
  tags   = merge(var.tags, { Name = var.name })
}

resource "aws_subnet" "public" {
  for_each          = local.public
  vpc_id            = aws_vpc.this.id
  cidr_block        = each.value
  availability_zone = each.key
  # no public IPs for instances: only the NLB lives here (CKV_AWS_130)
  map_public_ip_on_launch = false
  tags = merge(var.tags, local.cluster, {
    Name                     = "${var.name}-public-${each.key}"
    "kubernetes.io/role/elb" = "1"
  })
}

resource "aws_subnet" "private" {
  for_each          = local.private
  vpc_id            = aws_vpc.this.id
  cidr_block        = each.value
  availability_zone = each.key
  tags = merge(var.tags, local.cluster, {
    Name                              = "${var.name}-private-${each.key}"
    "kubernetes.io/role/internal-elb" = "1"
  })
}

resource "aws_eip" "nat" {
  domain = "vpc"
  tags   = merge(var.tags, { Name = "${var.name}-nat" })
}

# One NAT gateway (in the first zone) for the private subnets' egress: nodes pull images and
# reach the federation controller through it. One per zone survives a zone's loss; at
# about $33 a month each, that is the operator's trade (add more NAT gateways and routes).
resource "aws_nat_gateway" "this" {
  allocation_id = aws_eip.nat.id
  subnet_id     = aws_subnet.public[var.zones[0]].id
  tags          = merge(var.tags, { Name = var.name })
  depends_on    = [aws_internet_gateway.this]
}

resource "aws_route_table" "public" {
  vpc_id = aws_vpc.this.id
  route {
    cidr_block = "0.0.0.0/0"
    gateway_id = aws_internet_gateway.this.id
  }
  tags = merge(var.tags, { Name = "${var.name}-public" })
}

resource "aws_route_table" "private" {
  vpc_id = aws_vpc.this.id
  route {
    cidr_block     = "0.0.0.0/0"
    nat_gateway_id = aws_nat_gateway.this.id
  }
  tags = merge(var.tags, { Name = "${var.name}-private" })
}

resource "aws_route_table_association" "public" {
  for_each       = aws_subnet.public
  subnet_id      = each.value.id
  route_table_id = aws_route_table.public.id
}

resource "aws_route_table_association" "private" {
  for_each       = aws_subnet.private
  subnet_id      = each.value.id
  route_table_id = aws_route_table.private.id
}
