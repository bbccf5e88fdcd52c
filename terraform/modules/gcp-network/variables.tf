variable "name" {
  description = "Name of the network (and prefix of its subnetwork, router, NAT and address)."
  type        = string

  validation {
    condition     = can(regex("^[a-z]([-a-z0-9]{0,50}[a-z0-9])?$", var.name))
    error_message = "name must be a lowercase RFC 1035 name of at most 52 characters."
  }
}

variable "project" {
  description = "Google Cloud project id."
  type        = string
}

variable "region" {
  description = "Region of the subnetwork, router and NAT (e.g. europe-west1)."
  type        = string
}

variable "nodes_cidr" {
  description = "Primary range of the subnetwork: node addresses."
  type        = string
  default     = "10.20.0.0/20"

  validation {
    condition     = can(cidrhost(var.nodes_cidr, 0))
    error_message = "nodes_cidr must be a CIDR block."
  }
}

variable "pods_cidr" {
  description = "Secondary range \"pods\": pod addresses (a /14 holds 1024 nodes of 110 pods)."
  type        = string
  default     = "10.24.0.0/14"

  validation {
    condition     = can(cidrhost(var.pods_cidr, 0))
    error_message = "pods_cidr must be a CIDR block."
  }
}

variable "services_cidr" {
  description = "Secondary range \"services\": ClusterIP addresses."
  type        = string
  default     = "10.28.0.0/20"

  validation {
    condition     = can(cidrhost(var.services_cidr, 0))
    error_message = "services_cidr must be a CIDR block."
  }
}

variable "labels" {
  description = "Labels for the resources that take them."
  type        = map(string)
  default     = {}
}
