# An existing EKS cluster and an existing GKE cluster (with a reserved address for its
# gateway) joined to one controller. Needs the hashicorp/google provider (not available offline here: this
# example is checked with `terraform fmt` only).

provider "aws" {
  region = var.aws_region
}

provider "google" {
  project = var.gcp_project
}

module "eks" {
  source = "../../modules/aws-member"

  cluster_name          = var.eks_cluster_name
  vpc_id                = var.eks_vpc_id
  subnet_ids            = var.eks_subnet_ids
  gateway_allowed_cidrs = var.federation_cidrs
}

module "gke" {
  source = "../../modules/gcp-member"

  cluster_name          = var.gke_cluster_name
  project               = var.gcp_project
  location              = var.gke_location
  network               = var.gke_network
  gateway_allowed_cidrs = var.federation_cidrs
}

module "federation" {
  source = "../../modules/federation"

  members      = [module.eks.member, module.gke.member]
  meshfed_home = var.meshfed_home
}

output "localities" {
  description = "meshfed locality of each member."
  value       = { (var.eks_cluster_name) = module.eks.locality, (var.gke_cluster_name) = module.gke.locality }
}
