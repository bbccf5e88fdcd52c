variable "meshfed_home" {
  description = "MESHFED_HOME of the controller to join (its config.yaml names the controller and token)."
  type        = string
}

variable "meshfed_bin" {
  description = "The meshfed command."
  type        = string
  default     = "meshfed"
}

variable "aws_endpoint" {
  description = "Send every AWS API call here instead of AWS (tests point it at moto); null: real AWS."
  type        = string
  default     = null
}

variable "federation_cidrs" {
  description = "CIDRs allowed to reach each gateway."
  type        = list(string)
  default     = ["0.0.0.0/0"]
}

variable "kubeconfigs" {
  description = "Per member name, a kubeconfig file for its cluster (e.g. from aws eks update-kubeconfig --kubeconfig FILE): meshfed is installed into those. {}: register only."
  type        = map(string)
  default     = {}
}

variable "controller_url" {
  description = "The controller's API as the clusters reach it (https://host:port); needed with kubeconfigs."
  type        = string
  default     = null
}

variable "meshfed_image" {
  description = "The meshfed image to install, by digest: REPO@sha256:DIGEST (make image prints it; docs/image.md). Required with kubeconfigs."
  type        = string
  default     = null

  validation {
    condition     = var.meshfed_image == null || can(regex("@sha256:[0-9a-f]{64}$", var.meshfed_image))
    error_message = "meshfed_image names an image by digest (REPO@sha256:<64 hex digits>): a tag can be moved."
  }
}
