# One mapping per source, with the same settings: partial batch responses (the processor
# reports the lowest failed sequence number), bisect on function error, bounded retries and
# record age, and the on-failure queue once those run out.

locals {
  event_sources = {
    kinesis  = aws_kinesis_stream.events.arn
    dynamodb = aws_dynamodb_table.source.stream_arn
  }
}

resource "aws_lambda_event_source_mapping" "source" {
  for_each = local.event_sources

  event_source_arn                   = each.value
  function_name                      = aws_lambda_function.processor.arn
  starting_position                  = var.starting_position
  batch_size                         = var.batch_size
  maximum_batching_window_in_seconds = var.batching_window_s
  parallelization_factor             = var.parallelization_factor
  maximum_retry_attempts             = var.maximum_retry_attempts
  maximum_record_age_in_seconds      = var.maximum_record_age_s
  bisect_batch_on_function_error     = var.bisect_batch_on_function_error
  function_response_types            = ["ReportBatchItemFailures"]

  destination_config {
    on_failure {
      destination_arn = aws_sqs_queue.on_failure.arn
    }
  }

  # Lambda checks the role's permissions on the source when the mapping is created.
  depends_on = [aws_iam_role_policy.processor]
}
