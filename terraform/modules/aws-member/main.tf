data "aws_region" "current" {}

data "aws_subnet" "member" {
  count = length(var.subnet_ids) # count, not for_each: subnet ids may be known only at apply
  id    = var.subnet_ids[count.index]
}

locals {
  zones = sort(distinct([for s in data.aws_subnet.member : s.availability_zone]))
  tags  = merge(var.tags, { "meshfed.io/member" = var.cluster_name })
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
