# Two EKS clusters in two AWS regions joined to a meshfed controller: `terraform apply`
# registers them (and, for each cluster given in `kubeconfigs`, installs meshfed into it:
# control plane, the gateway's LoadBalancer Service -- an NLB made by the AWS Load Balancer
# Controller -- and the sidecar injector); `terraform destroy` uninstalls and withdraws them.

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

resource "aws_vpc" "use1" {
  provider   = aws.use1
  cidr_block = "10.10.0.0/16"
}

resource "aws_subnet" "use1" {
  provider          = aws.use1
  for_each          = { a = "10.10.1.0/24", b = "10.10.2.0/24" }
  vpc_id            = aws_vpc.use1.id
  cidr_block        = each.value
  availability_zone = "us-east-1${each.key}"
}

module "use1" {
  source    = "../../modules/aws-member"
  providers = { aws = aws.use1 }

  cluster_name          = "aws-us-east-1"
  create_cluster        = true
  cluster_role_arn      = aws_iam_role.eks.arn
  vpc_id                = aws_vpc.use1.id
  subnet_ids            = [for s in aws_subnet.use1 : s.id]
  gateway_allowed_cidrs = var.federation_cidrs

  depends_on = [aws_iam_role_policy_attachment.eks]
}

# -- eu-west-1 -------------------------------------------------------------------------------

resource "aws_vpc" "euw1" {
  provider   = aws.euw1
  cidr_block = "10.20.0.0/16"
}

resource "aws_subnet" "euw1" {
  provider          = aws.euw1
  for_each          = { a = "10.20.1.0/24", b = "10.20.2.0/24" }
  vpc_id            = aws_vpc.euw1.id
  cidr_block        = each.value
  availability_zone = "eu-west-1${each.key}"
}

module "euw1" {
  source    = "../../modules/aws-member"
  providers = { aws = aws.euw1 }

  cluster_name          = "aws-eu-west-1"
  create_cluster        = true
  cluster_role_arn      = aws_iam_role.eks.arn
  vpc_id                = aws_vpc.euw1.id
  subnet_ids            = [for s in aws_subnet.euw1 : s.id]
  gateway_allowed_cidrs = var.federation_cidrs

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
