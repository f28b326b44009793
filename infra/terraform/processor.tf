# The demo's processor: the module around the demo handler (processor/handler.py), reading
# this stack's stream and table, and writing the sink table besides its own checkpoints.

module "processor" {
  source = "./modules/ordered-processor"

  name       = var.name
  lambda_zip = var.lambda_zip
  handler    = "processor.handler.handler"
  environment = {
    SINK_TABLE = aws_dynamodb_table.sink.name
  }
  # processor/handler.py reads a key's row and updates it in the checkpoint's transaction.
  policy_statements = [{
    Sid      = "ReadWriteSink"
    Effect   = "Allow"
    Action   = ["dynamodb:GetItem", "dynamodb:UpdateItem"]
    Resource = [aws_dynamodb_table.sink.arn]
  }]

  kinesis_stream_arns  = { kinesis = aws_kinesis_stream.events.arn }
  dynamodb_stream_arns = { dynamodb = aws_dynamodb_table.source.stream_arn }
  enhanced_fan_out     = var.enhanced_fan_out

  starting_position              = var.starting_position
  batch_size                     = var.batch_size
  batching_window_s              = var.batching_window_s
  maximum_retry_attempts         = var.maximum_retry_attempts
  maximum_record_age_s           = var.maximum_record_age_s
  parallelization_factor         = var.parallelization_factor
  bisect_batch_on_function_error = var.bisect_batch_on_function_error
  tumbling_window_in_seconds     = var.tumbling_window_in_seconds
  filter_criteria                = var.filter_criteria
  metrics_config                 = var.metrics_config
  on_failure_destination         = var.on_failure_destination

  max_attempts       = var.max_attempts
  memory_mb          = var.memory_mb
  timeout_s          = var.timeout_s
  log_level          = var.log_level
  log_retention_days = var.log_retention_days

  iterator_age_alarm_ms = var.iterator_age_alarm_ms
  alarm_actions         = var.alarm_actions
}
