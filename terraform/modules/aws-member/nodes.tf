# What a created cluster needs before meshfed's pods can run and its gateway can get an NLB:
# a managed node group (nodes in the private subnets, with the three policies EKS documents
# for node roles) and, for the AWS Load Balancer Controller, an IAM OIDC provider of the
# cluster and a role its service account assumes (IRSA). Sources:
# https://docs.aws.amazon.com/eks/latest/userguide/create-node-role.html and
# https://docs.aws.amazon.com/eks/latest/userguide/lbc-helm.html (2026-12).

locals {
  create_nodes = var.create_cluster && var.node_group != null
  create_lbc   = var.create_cluster && var.load_balancer_controller_role
  oidc_issuer  = var.create_cluster ? aws_eks_cluster.this[0].identity[0].oidc[0].issuer : ""
}

data "aws_iam_policy_document" "node_assume" {
  statement {
    actions = ["sts:AssumeRole"]
    principals {
      type        = "Service"
      identifiers = ["ec2.amazonaws.com"]
    }
  }
}

resource "aws_iam_role" "node" {
  count              = local.create_nodes ? 1 : 0
  name               = "${var.cluster_name}-nodes"
  assume_role_policy = data.aws_iam_policy_document.node_assume.json
  tags               = local.tags
}

resource "aws_iam_role_policy_attachment" "node" {
  for_each = local.create_nodes ? toset([
    "arn:aws:iam::aws:policy/AmazonEKSWorkerNodePolicy",
    "arn:aws:iam::aws:policy/AmazonEKS_CNI_Policy",
    "arn:aws:iam::aws:policy/AmazonEC2ContainerRegistryReadOnly",
  ]) : toset([])
  role       = aws_iam_role.node[0].name
  policy_arn = each.value
}

resource "aws_eks_node_group" "this" {
  count           = local.create_nodes ? 1 : 0
  cluster_name    = aws_eks_cluster.this[0].name
  node_group_name = "${var.cluster_name}-default"
  node_role_arn   = aws_iam_role.node[0].arn
  subnet_ids      = coalesce(var.node_subnet_ids, var.subnet_ids)
  instance_types  = var.node_group.instance_types

  scaling_config {
    desired_size = var.node_group.desired_size
    min_size     = var.node_group.min_size
    max_size     = var.node_group.max_size
  }

  # upgrades replace one node at a time (EKS's default max_unavailable, which meshfed's
  # PodDisruptionBudgets expect); no SSH access is configured

  tags       = local.tags
  depends_on = [aws_iam_role_policy_attachment.node]

  lifecycle {
    # moto's EKS fake reports a remote_access block (key "eksKeypair") that was never set,
    # which would force a replacement on every plan of the tests; the module sets none
    ignore_changes = [remote_access]
  }
}

resource "aws_iam_openid_connect_provider" "cluster" {
  count          = local.create_lbc ? 1 : 0
  url            = local.oidc_issuer
  client_id_list = ["sts.amazonaws.com"]
  tags           = local.tags
}

data "aws_iam_policy_document" "lbc_assume" {
  count = local.create_lbc ? 1 : 0
  statement {
    actions = ["sts:AssumeRoleWithWebIdentity"]
    principals {
      type        = "Federated"
      identifiers = [aws_iam_openid_connect_provider.cluster[0].arn]
    }
    condition {
      test     = "StringEquals"
      variable = "${replace(local.oidc_issuer, "https://", "")}:sub"
      values   = ["system:serviceaccount:kube-system:aws-load-balancer-controller"]
    }
    condition {
      test     = "StringEquals"
      variable = "${replace(local.oidc_issuer, "https://", "")}:aud"
      values   = ["sts.amazonaws.com"]
    }
  }
}

resource "aws_iam_role" "load_balancer_controller" {
  count              = local.create_lbc ? 1 : 0
  name               = "${var.cluster_name}-aws-load-balancer-controller"
  assume_role_policy = data.aws_iam_policy_document.lbc_assume[0].json
  tags               = local.tags
}

# What the controller calls to make and keep an NLB for a LoadBalancer Service (instance or
# ip targets, security groups from loadBalancerSourceRanges, tags), narrowed from its upstream
# policy to the NLB path meshfed uses: no ALB, WAF, Shield or Cognito actions.
data "aws_iam_policy_document" "load_balancer_controller" {
  count = local.create_lbc ? 1 : 0
  statement {
    sid = "Describe"
    actions = [
      "ec2:DescribeAccountAttributes", "ec2:DescribeAddresses", "ec2:DescribeAvailabilityZones",
      "ec2:DescribeInternetGateways", "ec2:DescribeVpcs", "ec2:DescribeSubnets",
      "ec2:DescribeSecurityGroups", "ec2:DescribeInstances", "ec2:DescribeNetworkInterfaces",
      "ec2:DescribeTags", "elasticloadbalancing:Describe*",
    ]
    resources = ["*"]
  }
  statement {
    sid       = "CreateSecurityGroupInTheVpc"
    actions   = ["ec2:CreateSecurityGroup"]
    resources = ["*"]
    condition {
      test     = "ArnLike"
      variable = "ec2:Vpc"
      values   = ["arn:aws:ec2:*:*:vpc/${var.vpc_id}"]
    }
  }
  statement {
    sid       = "TagWhatItCreates"
    actions   = ["ec2:CreateTags"]
    resources = ["arn:aws:ec2:*:*:security-group/*"]
    condition {
      test     = "StringEquals"
      variable = "ec2:CreateAction"
      values   = ["CreateSecurityGroup"]
    }
  }
  statement {
    sid       = "ItsSecurityGroups"
    actions   = ["ec2:AuthorizeSecurityGroupIngress", "ec2:RevokeSecurityGroupIngress", "ec2:DeleteSecurityGroup"]
    resources = ["*"]
    condition {
      test     = "Null"
      variable = "aws:ResourceTag/elbv2.k8s.aws/cluster"
      values   = ["false"]
    }
  }
  statement {
    sid       = "CreateTaggedLoadBalancers"
    actions   = ["elasticloadbalancing:CreateLoadBalancer", "elasticloadbalancing:CreateTargetGroup"]
    resources = ["*"]
    condition {
      test     = "Null"
      variable = "aws:RequestTag/elbv2.k8s.aws/cluster"
      values   = ["false"]
    }
  }
  statement {
    sid = "ItsLoadBalancers"
    actions = [
      "elasticloadbalancing:ModifyLoadBalancerAttributes", "elasticloadbalancing:ModifyTargetGroup",
      "elasticloadbalancing:ModifyTargetGroupAttributes", "elasticloadbalancing:DeleteLoadBalancer",
      "elasticloadbalancing:DeleteTargetGroup", "elasticloadbalancing:SetSecurityGroups",
      "elasticloadbalancing:SetSubnets", "elasticloadbalancing:AddTags",
      "elasticloadbalancing:RemoveTags",
    ]
    resources = ["*"]
    condition {
      test     = "Null"
      variable = "aws:ResourceTag/elbv2.k8s.aws/cluster"
      values   = ["false"]
    }
  }
  statement {
    sid = "ListenersAndTargets"
    actions = [
      "elasticloadbalancing:CreateListener", "elasticloadbalancing:DeleteListener",
      "elasticloadbalancing:ModifyListener", "elasticloadbalancing:RegisterTargets",
      "elasticloadbalancing:DeregisterTargets",
    ]
    resources = [
      "arn:aws:elasticloadbalancing:*:*:loadbalancer/net/*/*",
      "arn:aws:elasticloadbalancing:*:*:listener/net/*/*/*",
      "arn:aws:elasticloadbalancing:*:*:targetgroup/*/*",
    ]
  }
}

resource "aws_iam_role_policy" "load_balancer_controller" {
  count  = local.create_lbc ? 1 : 0
  name   = "aws-load-balancer-controller"
  role   = aws_iam_role.load_balancer_controller[0].id
  policy = data.aws_iam_policy_document.load_balancer_controller[0].json
}
