# The processor's own state: each key's position (and, with keyed state, its state).
#
# Encrypted under the AWS managed key (alias/aws/dynamodb) rather than DynamoDB's default AWS
# owned key: the data is encrypted at rest either way, but only a key in the account shows in
# DescribeTable (SSEDescription) and has its use recorded in CloudTrail. Its key policy lets
# any principal allowed to use DynamoDB use it through DynamoDB, so the function's role needs
# no KMS permission. KMS request charges apply.

resource "aws_dynamodb_table" "checkpoints" {
  name         = "${var.name}-checkpoints"
  billing_mode = "PAY_PER_REQUEST"
  hash_key     = "pk"

  attribute {
    name = "pk"
    type = "S"
  }

  # Entries carry an expiry beyond the stream's retention: a checkpoint for a record that can
  # no longer be redelivered protects nothing.
  ttl {
    attribute_name = "expires_at"
    enabled        = true
  }

  point_in_time_recovery {
    enabled = true
  }

  server_side_encryption {
    enabled = true
  }
}
