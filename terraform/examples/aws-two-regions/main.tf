# Two EKS clusters in two AWS regions joined to a meshfed controller. Each region gets a VPC
# (modules/aws-network: public subnets for the gateway's NLB, private ones for the nodes, an
# internet gateway, a NAT gateway, routes, the subnet tags the AWS Load Balancer Controller
# looks for), an EKS cluster with a managed node group, and the IAM role of the AWS Load
# Balancer Controller (IRSA; its Helm chart is installed with that role: terraform.md).
# `terraform apply` registers both clusters (and, for each cluster given in `kubeconfigs`,
# installs meshfed into it: control plane, the gateway's LoadBalancer Service -- an NLB,
# reachable from the other region's NAT address and var.federation_cidrs only -- and the
# sidecar injector); `terraform destroy` uninstalls and withdraws them.

data "aws_iam_policy_document" "eks_assume" {
  provider = aws.use1
  statement {
    actions = ["sts:AssumeRole"]
    principals {
      type        = "Service"
      identifiers = ["eks.amazonaws.com"]
    }
  }
}

resource "aws_iam_role" "eks" {
  provider           = aws.use1
  name               = "meshfed-example-eks"
  assume_role_policy = data.aws_iam_policy_document.eks_assume.json
}

resource "aws_iam_role_policy_attachment" "eks" {
  provider   = aws.use1
  role       = aws_iam_role.eks.name
  policy_arn = "arn:aws:iam::aws:policy/AmazonEKSClusterPolicy"
}

# -- us-east-1 -------------------------------------------------------------------------------

module "net_use1" {
  source    = "../../modules/aws-network"
  providers = { aws = aws.use1 }

  name       = "aws-us-east-1"
  cidr_block = "10.10.0.0/16"
  zones      = ["us-east-1a", "us-east-1b"]
}

module "use1" {
  source    = "../../modules/aws-member"
  providers = { aws = aws.use1 }

  cluster_name     = "aws-us-east-1"
  create_cluster   = true
  cluster_role_arn = aws_iam_role.eks.arn
  vpc_id           = module.net_use1.vpc_id
  subnet_ids       = concat(module.net_use1.private_subnet_ids, module.net_use1.public_subnet_ids)
  node_subnet_ids  = module.net_use1.private_subnet_ids
  # the other member's pods reach this gateway from its NAT gateway's address
  gateway_allowed_cidrs = concat(var.federation_cidrs, ["${module.net_euw1.nat_public_ip}/32"])

  depends_on = [aws_iam_role_policy_attachment.eks]
}

# -- eu-west-1 -------------------------------------------------------------------------------

module "net_euw1" {
  source    = "../../modules/aws-network"
  providers = { aws = aws.euw1 }

  name       = "aws-eu-west-1"
  cidr_block = "10.20.0.0/16"
  zones      = ["eu-west-1a", "eu-west-1b"]
}

module "euw1" {
  source    = "../../modules/aws-member"
  providers = { aws = aws.euw1 }

  cluster_name     = "aws-eu-west-1"
  create_cluster   = true
  cluster_role_arn = aws_iam_role.eks.arn
  vpc_id           = module.net_euw1.vpc_id
  subnet_ids       = concat(module.net_euw1.private_subnet_ids, module.net_euw1.public_subnet_ids)
  node_subnet_ids  = module.net_euw1.private_subnet_ids
  # the other member's pods reach this gateway from its NAT gateway's address
  gateway_allowed_cidrs = concat(var.federation_cidrs, ["${module.net_use1.nat_public_ip}/32"])

  depends_on = [aws_iam_role_policy_attachment.eks]
}

# -- federation ------------------------------------------------------------------------------

module "federation" {
  source = "../../modules/federation"

  members = [
    for m in [module.use1.member, module.euw1.member] :
    merge(m, { kubeconfig = lookup(var.kubeconfigs, m.name, null) })
  ]
  meshfed_home   = var.meshfed_home
  meshfed_bin    = var.meshfed_bin
  controller_url = var.controller_url
  meshfed_image  = var.meshfed_image
}
