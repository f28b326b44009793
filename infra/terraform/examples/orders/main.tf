# A user's own configuration: their stream, their table, their handler, and the module
# around them. The README walks through it; `make test` runs `terraform validate` on it.
#
#   zip -r orders.zip orders/ processor/ (plus the dependencies: see the README)
#   terraform init && terraform apply

terraform {
  required_version = ">= 1.4"

  required_providers {
    aws = {
      source  = "hashicorp/aws"
      version = ">= 5.0"
    }
  }
}

provider "aws" {
  region = "eu-west-1"
}

resource "aws_kinesis_stream" "orders" {
  name             = "orders"
  shard_count      = 4
  retention_period = 24
  encryption_type  = "KMS"
  kms_key_id       = "alias/aws/kinesis"
}

resource "aws_dynamodb_table" "customers" {
  name             = "customers"
  billing_mode     = "PAY_PER_REQUEST"
  hash_key         = "id"
  stream_enabled   = true
  stream_view_type = "NEW_AND_OLD_IMAGES"

  attribute {
    name = "id"
    type = "S"
  }
}

module "orders" {
  source = "../../modules/ordered-processor"

  name       = "orders"
  lambda_zip = "${path.module}/orders.zip"
  handler    = "orders.handler.handler"

  kinesis_stream_arns  = { orders = aws_kinesis_stream.orders.arn }
  dynamodb_stream_arns = { customers = aws_dynamodb_table.customers.stream_arn }
  enhanced_fan_out     = true

  batch_size             = 500
  parallelization_factor = 4
  filter_criteria        = [{ data = { type = ["order"] } }]
  metrics_config         = true
  on_failure_destination = "sns"

  environment = { ORDERS_TABLE = "orders-view" }
  policy_statements = [{
    Effect   = "Allow"
    Action   = ["dynamodb:UpdateItem"]
    Resource = ["arn:aws:dynamodb:eu-west-1:123456789012:table/orders-view"]
  }]
}

output "poison_queue_url" {
  value = module.orders.poison_queue_url
}
