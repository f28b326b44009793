output "function_name" {
  value = aws_lambda_function.processor.function_name
}

output "function_arn" {
  value = aws_lambda_function.processor.arn
}

output "role_arn" {
  description = "The function's execution role: attach more policies to it for your handler's own needs, or use var.policy_statements."
  value       = aws_iam_role.processor.arn
}

output "role_name" {
  value = aws_iam_role.processor.name
}

output "log_group_name" {
  value = aws_cloudwatch_log_group.processor.name
}

output "checkpoint_table_name" {
  value = aws_dynamodb_table.checkpoints.name
}

output "checkpoint_table_arn" {
  value = aws_dynamodb_table.checkpoints.arn
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

output "mapping_uuids" {
  description = "Each mapping's UUID, by the source's name in kinesis_stream_arns or dynamodb_stream_arns."
  value       = { for name, mapping in aws_lambda_event_source_mapping.source : name => mapping.uuid }
}

output "consumer_arns" {
  description = "The enhanced fan-out consumers' ARNs, by the stream's name (empty unless enhanced_fan_out)."
  value       = { for name, consumer in aws_kinesis_stream_consumer.source : name => consumer.arn }
}

output "alarm_names" {
  value = concat(
    [aws_cloudwatch_metric_alarm.iterator_age.alarm_name, aws_cloudwatch_metric_alarm.function_errors.alarm_name],
    [for alarm in aws_cloudwatch_metric_alarm.queue_depth : alarm.alarm_name],
  )
}
