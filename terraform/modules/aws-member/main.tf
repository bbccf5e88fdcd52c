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
  #checkov:skip=CKV_AWS_39:the API endpoint stays public so that `terraform apply` (meshfed install --apply) reaches it from the operator's machine; api_allowed_cidrs narrows who may
  #checkov:skip=CKV_AWS_38:api_allowed_cidrs defaults to anywhere because the operator's address is not known here; set it (the EKS API still requires IAM authentication)
  #checkov:skip=CKV_AWS_58:secrets are envelope-encrypted with kms_key_id when one is given (encryption_config below); EKS encrypts etcd at rest with an AWS-owned key otherwise
  count = var.create_cluster ? 1 : 0

  name     = var.cluster_name
  role_arn = var.cluster_role_arn
  version  = var.kubernetes_version

  # every control plane log type, to CloudWatch (CKV_AWS_37)
  enabled_cluster_log_types = ["api", "audit", "authenticator", "controllerManager", "scheduler"]

  vpc_config {
    subnet_ids              = var.subnet_ids
    endpoint_private_access = true
    endpoint_public_access  = true
    public_access_cidrs     = var.api_allowed_cidrs
  }

  dynamic "encryption_config" {
    for_each = var.kms_key_id == null ? [] : [var.kms_key_id]
    content {
      resources = ["secrets"]
      provider {
        key_arn = encryption_config.value
      }
    }
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
  #checkov:skip=CKV2_AWS_57:meshfed rotates this intermediate itself (the controller re-signs it at half life over the sync channel); a Secrets Manager rotation Lambda would mint a CA the federation does not know
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
