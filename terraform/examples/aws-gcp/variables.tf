variable "meshfed_home" {
  description = "MESHFED_HOME of the controller to join."
  type        = string
}

variable "aws_region" {
  description = "Region of the EKS cluster."
  type        = string
  default     = "us-east-1"
}

variable "eks_cluster_name" {
  description = "Existing EKS cluster."
  type        = string
}

variable "eks_vpc_id" {
  description = "Its VPC."
  type        = string
}

variable "eks_subnet_ids" {
  description = "Public subnets for its gateway load balancer."
  type        = list(string)
}

variable "gcp_project" {
  description = "Google Cloud project of the GKE cluster."
  type        = string
}

variable "gke_cluster_name" {
  description = "The GKE cluster: an existing one, or the one create_gke_cluster makes."
  type        = string
}

variable "gke_location" {
  description = "Its location (region or zone)."
  type        = string
}

variable "gke_network" {
  description = "Its VPC network (with create_gke_cluster: the network to create)."
  type        = string
  default     = "default"
}

variable "federation_cidrs" {
  description = "CIDRs allowed to reach each gateway (the members' egress ranges)."
  type        = list(string)
}

variable "create_gke_cluster" {
  description = "Create the GKE cluster, its node pool and its network (true) or use an existing cluster (false)."
  type        = bool
  default     = false
}

variable "api_allowed_cidrs" {
  description = "With create_gke_cluster: who may reach the new cluster's API (your address)."
  type        = list(string)
  default     = ["0.0.0.0/0"]
}
