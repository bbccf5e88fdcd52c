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
