# Terraform and provider versions this module is written and checked against.
#
# google >= 6.50 is the first release with `instance_name` on
# google_bigtable_table_iam_member (the only spelling 7.x accepts); the module
# uses nothing that 8.x is known to change, but a major release is not
# admitted without someone reading its upgrade guide first.
terraform {
  required_version = ">= 1.5.0, < 2.0.0"

  required_providers {
    google = {
      source  = "hashicorp/google"
      version = ">= 6.50.0, < 8.0.0"
    }
  }
}
