# An existing EKS cluster and a GKE cluster (with a reserved address for its gateway) joined to
# one controller. The GKE cluster is an existing one, or with create_gke_cluster a new private
# one in a network of its own (gcp-network: subnetwork with pod and Service ranges, Cloud NAT on
# one address, which the EKS gateway then admits). Needs the hashicorp/google provider (not
# available offline here: this example is checked with `terraform fmt` and checkov only).

provider "aws" {
  region = var.aws_region
}

provider "google" {
  project = var.gcp_project
}

module "eks" {
  source = "../../modules/aws-member"

  cluster_name = var.eks_cluster_name
  vpc_id       = var.eks_vpc_id
  subnet_ids   = var.eks_subnet_ids
  # a created GKE cluster's pods leave by its Cloud NAT address
  gateway_allowed_cidrs = concat(var.federation_cidrs, var.create_gke_cluster ? [module.gke_network[0].nat_address] : [])
}

module "gke_network" {
  source = "../../modules/gcp-network"
  count  = var.create_gke_cluster ? 1 : 0

  name    = var.gke_network
  project = var.gcp_project
  region  = length(split("-", var.gke_location)) > 2 ? join("-", slice(split("-", var.gke_location), 0, 2)) : var.gke_location
}

module "gke" {
  source = "../../modules/gcp-member"

  cluster_name          = var.gke_cluster_name
  project               = var.gcp_project
  location              = var.gke_location
  network               = var.create_gke_cluster ? module.gke_network[0].network : var.gke_network
  gateway_allowed_cidrs = var.federation_cidrs

  create_cluster    = var.create_gke_cluster
  subnetwork        = var.create_gke_cluster ? module.gke_network[0].subnetwork : null
  api_allowed_cidrs = var.api_allowed_cidrs
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
