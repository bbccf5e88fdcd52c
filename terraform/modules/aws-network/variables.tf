variable "name" {
  description = "Name of the network, and of the EKS cluster whose load balancers use its subnets (the kubernetes.io/cluster/<name> tag)."
  type        = string
}

variable "cidr_block" {
  description = "The VPC's IPv4 range, e.g. 10.10.0.0/16; split into one public and one private /20 per zone."
  type        = string

  validation {
    condition     = can(cidrsubnet(var.cidr_block, 4, 0))
    error_message = "cidr_block must be an IPv4 CIDR of /16 to /24."
  }
}

variable "zones" {
  description = "Availability zones (at least two: EKS needs subnets in two)."
  type        = list(string)

  validation {
    condition     = length(var.zones) >= 2
    error_message = "zones needs at least two availability zones."
  }
}

variable "tags" {
  description = "Tags for every resource."
  type        = map(string)
  default     = {}
}
