locals {
  services  = ["ec2", "eks", "elbv2", "iam", "sts", "route53", "secretsmanager", "kms"]
  endpoints = var.aws_endpoint == null ? {} : { for s in local.services : s => var.aws_endpoint }
  fake      = var.aws_endpoint != null
}

provider "aws" {
  alias                       = "use1"
  region                      = "us-east-1"
  skip_credentials_validation = local.fake
  skip_requesting_account_id  = local.fake
  skip_metadata_api_check     = local.fake

  dynamic "endpoints" {
    for_each = local.fake ? [local.endpoints] : []
    content {
      ec2            = endpoints.value.ec2
      eks            = endpoints.value.eks
      elbv2          = endpoints.value.elbv2
      iam            = endpoints.value.iam
      sts            = endpoints.value.sts
      route53        = endpoints.value.route53
      secretsmanager = endpoints.value.secretsmanager
      kms            = endpoints.value.kms
    }
  }
}

provider "aws" {
  alias                       = "euw1"
  region                      = "eu-west-1"
  skip_credentials_validation = local.fake
  skip_requesting_account_id  = local.fake
  skip_metadata_api_check     = local.fake

  dynamic "endpoints" {
    for_each = local.fake ? [local.endpoints] : []
    content {
      ec2            = endpoints.value.ec2
      eks            = endpoints.value.eks
      elbv2          = endpoints.value.elbv2
      iam            = endpoints.value.iam
      sts            = endpoints.value.sts
      route53        = endpoints.value.route53
      secretsmanager = endpoints.value.secretsmanager
      kms            = endpoints.value.kms
    }
  }
}
