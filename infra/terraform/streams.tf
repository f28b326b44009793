# The two sources: a Kinesis stream and a DynamoDB table whose stream carries both images.

resource "aws_kinesis_stream" "events" {
  name             = "${var.name}-events"
  shard_count      = var.stream_mode == "PROVISIONED" ? var.shard_count : null
  retention_period = var.stream_retention_hours
  # The AWS managed key: consumers and producers need no KMS permissions for it.
  encryption_type = "KMS"
  kms_key_id      = "alias/aws/kinesis"

  stream_mode_details {
    stream_mode = var.stream_mode
  }
}

resource "aws_dynamodb_table" "source" {
  name             = "${var.name}-source"
  billing_mode     = "PAY_PER_REQUEST"
  hash_key         = "pk"
  stream_enabled   = true
  stream_view_type = "NEW_AND_OLD_IMAGES"

  attribute {
    name = "pk"
    type = "S"
  }

  # The AWS managed key, as for every table (tables.tf says why); the stream shares the
  # table's key.
  server_side_encryption {
    enabled = true
  }
}
