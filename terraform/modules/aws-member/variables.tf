variable "cluster_name" {
  description = "Name of the EKS cluster (and of the meshfed member cluster). A DNS label."
  type        = string

  validation {
    condition     = can(regex("^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$", var.cluster_name))
    error_message = "cluster_name must be a DNS label: lowercase letters, digits and '-', at most 63."
  }
}

variable "create_cluster" {
  description = "Create the EKS cluster (true) or use an existing one of that name (false)."
  type        = bool
  default     = false
}

variable "cluster_role_arn" {
  description = "IAM role for the EKS control plane; required when create_cluster is true."
  type        = string
  default     = null
}

variable "kubernetes_version" {
  description = "Kubernetes version of a created cluster (null: the EKS default)."
  type        = string
  default     = null
}

variable "vpc_id" {
  description = "VPC of the cluster: meshfed's network for this member."
  type        = string
}

variable "subnet_ids" {
  description = "Subnets for the cluster (when created) and the gateway load balancer; their zones become the member's locality."
  type        = list(string)

  validation {
    condition     = length(var.subnet_ids) >= 1
    error_message = "subnet_ids needs at least one subnet."
  }
}

variable "gateway_port" {
  description = "TCP port of the east-west gateway (meshfed's default is 15443)."
  type        = number
  default     = 15443

  validation {
    condition     = var.gateway_port >= 1 && var.gateway_port <= 65535
    error_message = "gateway_port must be 1-65535."
  }
}

variable "gateway_allowed_cidrs" {
  description = "CIDRs allowed to reach the gateway: the other members' gateway egress ranges. Nothing else is opened."
  type        = list(string)

  validation {
    condition     = alltrue([for c in var.gateway_allowed_cidrs : can(cidrhost(c, 0))])
    error_message = "gateway_allowed_cidrs must be CIDR blocks, e.g. 203.0.113.0/24."
  }
}

variable "route53_zone_id" {
  description = "Hosted zone for a gateway DNS record (null: no record)."
  type        = string
  default     = null
}

variable "gateway_dns_name" {
  description = "Record name in route53_zone_id for the gateway, e.g. gw.us-east-1.mesh.example.org."
  type        = string
  default     = null
}

variable "intermediate_ca_pem" {
  description = "The cluster's intermediate CA certificate and key (PEM) to keep in Secrets Manager; null: not stored."
  type        = string
  default     = null
  sensitive   = true
}

variable "kms_key_id" {
  description = "KMS key that encrypts the Secrets Manager secret (null: the account's aws/secretsmanager key)."
  type        = string
  default     = null
}

variable "tags" {
  description = "Tags for every resource."
  type        = map(string)
  default     = {}
}
