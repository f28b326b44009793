locals {
  # Every service this stack calls. AWS_ENDPOINT_URL-style emulators (moto, LocalStack) serve
  # them all on one endpoint; per-service entries in var.endpoints win over var.endpoint_url.
  endpoint_services = ["cloudwatch", "dynamodb", "iam", "kinesis", "lambda", "logs", "s3", "sns", "sqs", "sts"]
  endpoints = {
    for service in local.endpoint_services :
    service => try(coalesce(lookup(var.endpoints, service, null), var.endpoint_url), null)
  }
}

provider "aws" {
  region = var.region

  # Emulators accept any credentials and have neither an account to look up nor an instance
  # metadata service; against AWS these checks stay on.
  skip_credentials_validation = var.emulator
  skip_requesting_account_id  = var.emulator
  skip_metadata_api_check     = var.emulator
  skip_region_validation      = var.emulator
  # An emulator at 127.0.0.1:PORT has no per-bucket host names.
  s3_use_path_style = var.emulator

  endpoints {
    cloudwatch = local.endpoints.cloudwatch
    dynamodb   = local.endpoints.dynamodb
    iam        = local.endpoints.iam
    kinesis    = local.endpoints.kinesis
    lambda     = local.endpoints.lambda
    logs       = local.endpoints.logs
    s3         = local.endpoints.s3
    sns        = local.endpoints.sns
    sqs        = local.endpoints.sqs
    sts        = local.endpoints.sts
  }

  default_tags {
    tags = merge({ project = "streamline", stack = var.name }, var.tags)
  }
}
