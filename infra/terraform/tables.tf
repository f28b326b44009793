# The demo app's sink: per key, the last event applied, a count and a hash chain.
#
# Encrypted under the AWS managed key (alias/aws/dynamodb), as the module's checkpoint table
# and the source table are: only a key in the account shows in DescribeTable and CloudTrail,
# and the function's role needs no KMS permission for it.

resource "aws_dynamodb_table" "sink" {
  name         = "${var.name}-sink"
  billing_mode = "PAY_PER_REQUEST"
  hash_key     = "pk"

  attribute {
    name = "pk"
    type = "S"
  }

  server_side_encryption {
    enabled = true
  }
}
