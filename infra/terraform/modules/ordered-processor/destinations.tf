# Where a mapping sends a batch it gave up on (var.on_failure_destination): the on-failure
# queue (queues.tf), or a topic or bucket created here only when chosen. Lambda writes AWS's
# own on-failure record there with the function's role (iam.tf grants exactly that action on
# exactly the chosen one). Both are encrypted at rest under the service's AWS managed key, as
# the tables are: the role needs no KMS permission for it.
# https://docs.aws.amazon.com/lambda/latest/dg/kinesis-on-failure-destination.html

locals {
  on_failure_sns = var.on_failure_destination == "sns"
  on_failure_s3  = var.on_failure_destination == "s3"

  on_failure_destination_arn = {
    sqs = aws_sqs_queue.on_failure.arn
    sns = one(aws_sns_topic.on_failure[*].arn)
    s3  = one(aws_s3_bucket.on_failure[*].arn)
  }[var.on_failure_destination]
}

resource "aws_sns_topic" "on_failure" {
  count = local.on_failure_sns ? 1 : 0

  name              = "${var.name}-on-failure"
  kms_master_key_id = "alias/aws/sns"
}

resource "aws_s3_bucket" "on_failure" {
  count = local.on_failure_s3 ? 1 : 0

  # Bucket names are global and lower-case: a prefix, completed by the provider.
  bucket_prefix = "${lower(var.name)}-"
  # Destroyed with the stack, records and all, as the queues are.
  force_destroy = true
}

resource "aws_s3_bucket_server_side_encryption_configuration" "on_failure" {
  count = local.on_failure_s3 ? 1 : 0

  bucket = aws_s3_bucket.on_failure[0].id

  rule {
    # SSE-KMS under the AWS managed key aws/s3; the bucket key cuts the KMS requests.
    apply_server_side_encryption_by_default {
      sse_algorithm = "aws:kms"
    }
    bucket_key_enabled = true
  }
}

resource "aws_s3_bucket_public_access_block" "on_failure" {
  count = local.on_failure_s3 ? 1 : 0

  bucket                  = aws_s3_bucket.on_failure[0].id
  block_public_acls       = true
  block_public_policy     = true
  ignore_public_acls      = true
  restrict_public_buckets = true
}
