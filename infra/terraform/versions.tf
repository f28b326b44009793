terraform {
  # terraform_data (used by the offline adapter) needs 1.4.
  required_version = ">= 1.4"

  required_providers {
    aws = {
      source  = "hashicorp/aws"
      version = ">= 5.0"
    }
  }
}
