# One terraform_data per member: `terraform apply` registers it with the federation controller
# (meshfed cluster join), `terraform destroy` withdraws it (meshfed cluster remove; an
# unreachable controller is a warning, not a failed destroy). Destroy-time
# provisioners may only read `self`, so everything they need travels in `input`.
resource "terraform_data" "member" {
  for_each = { for m in var.members : m.name => m }

  input = {
    name         = each.value.name
    locality     = each.value.locality
    network      = each.value.network
    gateway      = each.value.gateway
    provider     = each.value.provider
    meshfed_home = var.meshfed_home
    meshfed_bin  = var.meshfed_bin
    token_ttl    = var.join_token_ttl
  }

  provisioner "local-exec" {
    command = "umask 077 && mkdir -p \"$MESHFED_HOME/join-tokens\" && \"$MESHFED_BIN\" cluster join \"$NAME\" --locality \"$LOCALITY\" --network \"$NETWORK\" --gateway \"$GATEWAY\" --provider \"$PROVIDER\" --token-ttl \"$TTL\" -o json > \"$MESHFED_HOME/join-tokens/$NAME.json\""
    environment = {
      MESHFED_HOME = self.input.meshfed_home
      MESHFED_BIN  = self.input.meshfed_bin
      NAME         = self.input.name
      LOCALITY     = self.input.locality
      NETWORK      = self.input.network
      GATEWAY      = self.input.gateway
      PROVIDER     = self.input.provider
      TTL          = self.input.token_ttl
    }
  }

  provisioner "local-exec" {
    when = destroy
    # exit 1 is "controller unreachable" (meshfed's retryable exit): a federation whose
    # controller is gone can still be destroyed; the member stays registered there, and the
    # warning says so. A refusal (exit 2) still fails the destroy.
    command = "\"$MESHFED_BIN\" cluster remove \"$NAME\"; rc=$?; if [ $rc -eq 1 ]; then echo \"meshfed: the controller is unreachable; $NAME stays registered there (meshfed cluster remove $NAME once it is back)\" >&2; rc=0; fi; [ $rc -eq 0 ] && rm -f \"$MESHFED_HOME/join-tokens/$NAME.json\"; exit $rc"
    environment = {
      MESHFED_HOME = self.input.meshfed_home
      MESHFED_BIN  = self.input.meshfed_bin
      NAME         = self.input.name
    }
  }
}

# Per member with a kubeconfig, two resources. `install` owns the installation's life:
# created before `apply`, its destroy-time provisioner uninstalls meshfed (`meshfed
# uninstall --apply`; the MCS CRDs stay) before the member is withdrawn. `apply` runs
# `meshfed install --apply` -- a server-side apply, so a re-run is an in-place upgrade -- and
# is replaced whenever an input of the installation changes (image, the gateway's CIDRs or
# address, the controller, locality, network, provider): a changed input reaches the cluster
# on the next `terraform apply`, not only the state. The token is read from its 0600 file,
# never put on a command line. A kubeconfig added later installs on the next apply (while
# the token is still valid).
resource "terraform_data" "install" {
  for_each = { for m in var.members : m.name => m if m.kubeconfig != null }

  input = {
    name         = each.value.name
    kubeconfig   = each.value.kubeconfig
    meshfed_home = var.meshfed_home
    meshfed_bin  = var.meshfed_bin
  }

  provisioner "local-exec" {
    when    = destroy
    command = "\"$MESHFED_BIN\" uninstall --apply --kubeconfig \"$KUBECONFIG_FILE\""
    environment = {
      MESHFED_HOME    = self.input.meshfed_home
      MESHFED_BIN     = self.input.meshfed_bin
      KUBECONFIG_FILE = self.input.kubeconfig
    }
  }

  depends_on = [terraform_data.member]

  lifecycle {
    precondition {
      condition     = var.meshfed_image != null
      error_message = "meshfed_image is required when a member has a kubeconfig: the image installed, by digest (REPO@sha256:DIGEST)."
    }
    precondition {
      condition     = var.controller_url != null
      error_message = "controller_url is required when a member has a kubeconfig: the address the cluster's control plane reaches the controller at."
    }
  }
}

resource "terraform_data" "apply" {
  for_each = terraform_data.install

  triggers_replace = local.installations[each.key]
  input            = local.installations[each.key]

  provisioner "local-exec" {
    command = "\"$MESHFED_BIN\" install --apply --kubeconfig \"$KUBECONFIG_FILE\" --cluster \"$NAME\" --locality \"$LOCALITY\" --network \"$NETWORK\" --provider \"$PROVIDER\" --controller \"$CONTROLLER\" --join-token-file \"$MESHFED_HOME/join-tokens/$NAME.json\" --image \"$IMAGE\" --gateway-allowed-cidrs \"$CIDRS\" --gateway-ip \"$GATEWAY_IP\""
    environment = {
      MESHFED_HOME    = self.input.meshfed_home
      MESHFED_BIN     = self.input.meshfed_bin
      KUBECONFIG_FILE = self.input.kubeconfig
      NAME            = self.input.name
      LOCALITY        = self.input.locality
      NETWORK         = self.input.network
      PROVIDER        = self.input.provider
      CONTROLLER      = self.input.controller_url
      IMAGE           = self.input.image
      CIDRS           = self.input.gateway_allowed_cidrs
      GATEWAY_IP      = self.input.gateway_ip
    }
  }
}

locals {
  # what `meshfed install` writes into a member's cluster; a change re-runs it
  installations = {
    for m in var.members : m.name => {
      name                  = m.name
      locality              = m.locality
      network               = m.network
      provider              = m.provider
      kubeconfig            = m.kubeconfig
      gateway_allowed_cidrs = join(",", m.gateway_allowed_cidrs)
      gateway_ip            = m.gateway_ip
      controller_url        = var.controller_url
      image                 = var.meshfed_image
      meshfed_home          = var.meshfed_home
      meshfed_bin           = var.meshfed_bin
    } if m.kubeconfig != null
  }
}
