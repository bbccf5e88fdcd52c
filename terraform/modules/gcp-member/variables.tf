variable "cluster_name" {
  description = "Name of the GKE cluster (and of the meshfed member). A DNS label."
  type        = string

  validation {
    condition     = can(regex("^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$", var.cluster_name))
    error_message = "cluster_name must be a DNS label."
  }
}

variable "project" {
  description = "Google Cloud project id."
  type        = string
}

variable "location" {
  description = "GKE location of the cluster (region or zone)."
  type        = string
}

variable "network" {
  description = "VPC network name (meshfed's network for this member)."
  type        = string
}

variable "gateway_allowed_cidrs" {
  description = "CIDRs allowed to reach the gateway (the other members' egress ranges): the gateway Service's loadBalancerSourceRanges, from which GKE makes the firewall rule."
  type        = list(string)

  validation {
    condition     = alltrue([for c in var.gateway_allowed_cidrs : can(cidrhost(c, 0))])
    error_message = "gateway_allowed_cidrs must be CIDR blocks."
  }
}

variable "labels" {
  description = "Labels for every resource."
  type        = map(string)
  default     = {}
}

variable "create_cluster" {
  description = "Create the GKE cluster and its node pool (true) or use an existing one of that name (false)."
  type        = bool
  default     = false
}

variable "subnetwork" {
  description = "With create_cluster: the nodes' subnetwork (gcp-network's subnetwork)."
  type        = string
  default     = null
}

variable "pods_range_name" {
  description = "With create_cluster: the subnetwork's secondary range of pod addresses."
  type        = string
  default     = "pods"
}

variable "services_range_name" {
  description = "With create_cluster: the subnetwork's secondary range of ClusterIP addresses."
  type        = string
  default     = "services"
}

variable "master_cidr" {
  description = "With create_cluster: the /28 of the private cluster's control plane endpoint."
  type        = string
  default     = "172.16.0.0/28"

  validation {
    condition     = can(cidrhost(var.master_cidr, 0)) && endswith(var.master_cidr, "/28")
    error_message = "master_cidr must be a /28 CIDR block."
  }
}

variable "api_allowed_cidrs" {
  description = "With create_cluster: who may reach the cluster's API endpoint (terraform, meshfed install --apply). Set it to your own address."
  type        = list(string)
  default     = ["0.0.0.0/0"]

  validation {
    condition     = alltrue([for c in var.api_allowed_cidrs : can(cidrhost(c, 0))])
    error_message = "api_allowed_cidrs must be CIDR blocks."
  }
}

variable "kubernetes_version" {
  description = "With create_cluster: minimum Kubernetes version (null: the release channel's default)."
  type        = string
  default     = null
}

variable "kms_key_name" {
  description = "With create_cluster: Cloud KMS key (projects/.../cryptoKeys/...) Secrets are encrypted with in etcd, the control plane replicas' shared identity among them; null: Google's default encryption."
  type        = string
  default     = null
}

variable "deletion_protection" {
  description = "With create_cluster: refuse `terraform destroy` of the cluster."
  type        = bool
  default     = true
}

variable "node_pool" {
  description = "With create_cluster: the node pool (per zone of the location: a regional cluster has min_count nodes in each zone)."
  type = object({
    machine_type = optional(string, "e2-standard-4")
    disk_size_gb = optional(number, 50)
    min_count    = optional(number, 1)
    max_count    = optional(number, 3)
  })
  default = {}

  validation {
    condition     = var.node_pool.min_count >= 1 && var.node_pool.max_count >= var.node_pool.min_count
    error_message = "node_pool needs 1 <= min_count <= max_count."
  }
}
