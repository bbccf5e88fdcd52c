variable "members" {
  description = "Members to join: the `member` output of aws-member / gcp-member modules, optionally with `kubeconfig` (a kubeconfig file for the cluster: meshfed is then installed into it). `gateway` \"\" means the cluster's control plane reports it (its LoadBalancer Service)."
  type = list(object({
    name                  = string
    locality              = string
    network               = string
    gateway               = optional(string, "")
    provider              = string
    gateway_allowed_cidrs = optional(list(string), [])
    gateway_ip            = optional(string, "")
    kubeconfig            = optional(string)
  }))

  validation {
    condition     = length(distinct([for m in var.members : m.name])) == length(var.members)
    error_message = "members must have distinct names."
  }

  validation {
    condition     = alltrue([for m in var.members : contains(["aws", "gcp", "local"], m.provider)])
    error_message = "each member's provider must be aws, gcp or local."
  }
}

variable "meshfed_home" {
  description = "MESHFED_HOME whose config.yaml names the controller and its admin token (written by `meshfed controller serve`). Join tokens are written there too (0600)."
  type        = string
}

variable "meshfed_bin" {
  description = "The meshfed command."
  type        = string
  default     = "meshfed"
}

variable "join_token_ttl" {
  description = "Lifetime of each member's one-time join token (Go duration, e.g. 1h)."
  type        = string
  default     = "1h"

  validation {
    condition     = can(regex("^([0-9]+(ms|s|m|h|d))+$", var.join_token_ttl))
    error_message = "join_token_ttl must be a duration such as 90s, 30m, 1h or 1h30m."
  }
}

variable "controller_url" {
  description = "The controller's API as the clusters reach it (https://host:port, replicas comma-separated); required when a member has a kubeconfig."
  type        = string
  default     = null
}

variable "meshfed_image" {
  description = "The meshfed image installed into members with a kubeconfig, by digest: REPO@sha256:DIGEST (make image prints it; docs/image.md). Required when a member has a kubeconfig."
  type        = string
  default     = null

  validation {
    condition     = var.meshfed_image == null || can(regex("@sha256:[0-9a-f]{64}$", var.meshfed_image))
    error_message = "meshfed_image names an image by digest (REPO@sha256:<64 hex digits>): a tag can be moved."
  }
}
