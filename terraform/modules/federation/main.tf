# One terraform_data per member: `terraform apply` joins it to the federation controller
# (meshfed cluster join), `terraform destroy` withdraws it (meshfed cluster remove). Destroy-time
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
    when    = destroy
    command = "\"$MESHFED_BIN\" cluster remove \"$NAME\" && rm -f \"$MESHFED_HOME/join-tokens/$NAME.json\""
    environment = {
      MESHFED_HOME = self.input.meshfed_home
      MESHFED_BIN  = self.input.meshfed_bin
      NAME         = self.input.name
    }
  }
}
