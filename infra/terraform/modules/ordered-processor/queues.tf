# Poison records (parked by the processor with their payload) and the mappings' on-failure
# records. Both are the last stop: no redrive policy, the longest retention SQS offers, and
# scripts/replay.py is the way out. Both are encrypted at rest with SQS-managed keys (SSE-SQS):
# no KMS key to manage, and neither producers nor consumers need a KMS permission.

locals {
  queue_retention_s = 1209600 # 14 days, the SQS maximum
}

resource "aws_sqs_queue" "poison" {
  name                      = "${var.name}-poison"
  message_retention_seconds = local.queue_retention_s
  sqs_managed_sse_enabled   = true
}

resource "aws_sqs_queue" "on_failure" {
  name                      = "${var.name}-on-failure"
  message_retention_seconds = local.queue_retention_s
  sqs_managed_sse_enabled   = true
}
