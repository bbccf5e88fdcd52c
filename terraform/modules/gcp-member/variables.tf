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
