data "aws_region" "current" {}

data "aws_subnet" "member" {
  count = length(var.subnet_ids) # count, not for_each: subnet ids may be known only at apply
  id    = var.subnet_ids[count.index]
}

locals {
  zones = sort(distinct([for s in data.aws_subnet.member : s.availability_zone]))
  tags  = merge(var.tags, { "meshfed.io/gateway-for" = var.cluster_name })
}

resource "aws_eks_cluster" "this" {
  count = var.create_cluster ? 1 : 0

  name     = var.cluster_name
  role_arn = var.cluster_role_arn
  version  = var.kubernetes_version

  vpc_config {
    subnet_ids = var.subnet_ids
  }

  tags = var.tags

  lifecycle {
    precondition {
      condition     = var.cluster_role_arn != null
      error_message = "cluster_role_arn is required when create_cluster is true."
    }
  }
}

data "aws_eks_cluster" "existing" {
  count = var.create_cluster ? 0 : 1
  name  = var.cluster_name
}

resource "aws_security_group" "gateway" {
  name        = "meshfed-${var.cluster_name}-gateway"
  description = "meshfed east-west gateway of ${var.cluster_name}: TCP ${var.gateway_port} from the federation only"
  vpc_id      = var.vpc_id
  tags        = local.tags
}

resource "aws_vpc_security_group_ingress_rule" "gateway" {
  for_each = toset(var.gateway_allowed_cidrs)

  security_group_id = aws_security_group.gateway.id
  description       = "meshfed gateway from ${each.value}"
  cidr_ipv4         = each.value
  ip_protocol       = "tcp"
  from_port         = var.gateway_port
  to_port           = var.gateway_port
}

resource "aws_lb" "gateway" {
  name               = substr("meshfed-${var.cluster_name}", 0, 32)
  load_balancer_type = "network"
  internal           = false
  subnets            = var.subnet_ids
  tags               = local.tags
}

resource "aws_lb_target_group" "gateway" {
  name        = substr("meshfed-${var.cluster_name}-${var.gateway_port}", 0, 32)
  port        = var.gateway_port
  protocol    = "TCP"
  target_type = "ip"
  vpc_id      = var.vpc_id
  tags        = local.tags
}

resource "aws_lb_listener" "gateway" {
  load_balancer_arn = aws_lb.gateway.arn
  port              = var.gateway_port
  protocol          = "TCP"
  tags              = local.tags

  default_action {
    type             = "forward"
    target_group_arn = aws_lb_target_group.gateway.arn
  }
}

resource "aws_route53_record" "gateway" {
  count = var.route53_zone_id != null && var.gateway_dns_name != null ? 1 : 0

  zone_id = var.route53_zone_id
  name    = var.gateway_dns_name
  type    = "CNAME"
  ttl     = 60
  records = [aws_lb.gateway.dns_name]
}

resource "aws_secretsmanager_secret" "intermediate_ca" {
  count = var.intermediate_ca_pem != null ? 1 : 0

  name        = "meshfed/${var.cluster_name}/intermediate-ca"
  description = "meshfed intermediate CA of ${var.cluster_name} (certificate and key, PEM)"
  kms_key_id  = var.kms_key_id
  tags        = local.tags
}

resource "aws_secretsmanager_secret_version" "intermediate_ca" {
  count = var.intermediate_ca_pem != null ? 1 : 0

  secret_id     = aws_secretsmanager_secret.intermediate_ca[0].id
  secret_string = var.intermediate_ca_pem
}
