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
  description = "Subnets of the cluster (when created); their zones become the member's locality."
  type        = list(string)

  validation {
    condition     = length(var.subnet_ids) >= 1
    error_message = "subnet_ids needs at least one subnet."
  }
}

variable "gateway_allowed_cidrs" {
  description = "CIDRs allowed to reach the gateway: the other members' egress ranges. They become the gateway Service's loadBalancerSourceRanges (meshfed install --gateway-allowed-cidrs), from which the AWS Load Balancer Controller makes the NLB's security group rules."
  type        = list(string)

  validation {
    condition     = alltrue([for c in var.gateway_allowed_cidrs : can(cidrhost(c, 0))])
    error_message = "gateway_allowed_cidrs must be CIDR blocks, e.g. 203.0.113.0/24."
  }
}

variable "intermediate_ca_pem" {
  description = "The cluster's intermediate CA certificate and key (PEM) to keep in Secrets Manager; null: not stored."
  type        = string
  default     = null
  sensitive   = true
}

variable "kms_key_id" {
  description = "KMS key that encrypts the Secrets Manager secret and a created cluster's Kubernetes Secrets (null: the account's aws/secretsmanager key; EKS's default encryption)."
  type        = string
  default     = null
}

variable "tags" {
  description = "Tags for every resource."
  type        = map(string)
  default     = {}
}

variable "node_subnet_ids" {
  description = "Subnets of the created node group (the private ones); null: subnet_ids."
  type        = list(string)
  default     = null
}

variable "node_group" {
  description = "The managed node group of a created cluster: instance types and sizes. null: none (nodes come from elsewhere: Karpenter, Fargate, a self-managed group)."
  type = object({
    instance_types = optional(list(string), ["m6i.large"])
    desired_size   = optional(number, 2)
    min_size       = optional(number, 2)
    max_size       = optional(number, 4)
  })
  default = {}
}

variable "load_balancer_controller_role" {
  description = "Create the IAM role (IRSA: an OIDC provider for the cluster, trusted by kube-system/aws-load-balancer-controller) the AWS Load Balancer Controller needs to make the gateway's NLB. Its Helm chart is installed by the operator with this role (output load_balancer_controller_role_arn)."
  type        = bool
  default     = true
}

variable "api_allowed_cidrs" {
  description = "Who may reach a created cluster's public Kubernetes API endpoint (the operator's machine, for meshfed install --apply). Default: anywhere, IAM authentication still applies."
  type        = list(string)
  default     = ["0.0.0.0/0"]
}
