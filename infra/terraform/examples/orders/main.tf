# A user's own configuration: their stream, their handler (the README's tour writes
# orders/handler.py), and the module around them. `make test` runs `terraform validate` on it.
#
#   python -m streamline.infra.lambda_zip --out orders.zip  # processor/ + its dependencies
#   zip -r orders.zip orders/                               # + the handler
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

module "orders" {
  source = "../../modules/ordered-processor"

  name       = "orders"
  lambda_zip = "${path.module}/orders.zip"
  handler    = "orders.handler.handler"

  kinesis_stream_arns = { orders = aws_kinesis_stream.orders.arn }
  enhanced_fan_out    = true

  batch_size             = 500
  parallelization_factor = 4
  # Test orders are dropped before batching: they never reach the handler.
  filter_criteria        = [{ data = { order_id = [{ "anything-but" = { prefix = "test-" } }] } }]
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
