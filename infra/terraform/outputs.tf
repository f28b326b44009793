# Everything scripts/ needs (make infra-up flattens these into build/stack.json).

output "region" {
  value = var.region
}

output "kinesis_stream_name" {
  value = aws_kinesis_stream.events.name
}

output "kinesis_stream_arn" {
  value = aws_kinesis_stream.events.arn
}

output "source_table_name" {
  value = aws_dynamodb_table.source.name
}

output "source_table_arn" {
  value = aws_dynamodb_table.source.arn
}

output "source_table_stream_arn" {
  value = aws_dynamodb_table.source.stream_arn
}

output "checkpoint_table_name" {
  value = aws_dynamodb_table.checkpoints.name
}

output "checkpoint_table_arn" {
  value = aws_dynamodb_table.checkpoints.arn
}

output "sink_table_name" {
  value = aws_dynamodb_table.sink.name
}

output "sink_table_arn" {
  value = aws_dynamodb_table.sink.arn
}

output "poison_queue_url" {
  value = aws_sqs_queue.poison.id
}

output "poison_queue_arn" {
  value = aws_sqs_queue.poison.arn
}

output "on_failure_queue_url" {
  value = aws_sqs_queue.on_failure.id
}

output "on_failure_queue_arn" {
  value = aws_sqs_queue.on_failure.arn
}

output "on_failure_destination_arn" {
  description = "Where the mappings send exhausted batches (var.on_failure_destination)."
  value       = local.on_failure_destination_arn
}

output "function_name" {
  value = aws_lambda_function.processor.function_name
}

output "function_arn" {
  value = aws_lambda_function.processor.arn
}

output "role_arn" {
  value = aws_iam_role.processor.arn
}

output "log_group_name" {
  value = aws_cloudwatch_log_group.processor.name
}

output "kinesis_mapping_uuid" {
  value = aws_lambda_event_source_mapping.source["kinesis"].uuid
}

output "dynamodb_mapping_uuid" {
  value = aws_lambda_event_source_mapping.source["dynamodb"].uuid
}

output "alarm_names" {
  value = concat(
    [aws_cloudwatch_metric_alarm.iterator_age.alarm_name, aws_cloudwatch_metric_alarm.function_errors.alarm_name],
    [for alarm in aws_cloudwatch_metric_alarm.queue_depth : alarm.alarm_name],
  )
}
