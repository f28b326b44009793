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
  value = module.processor.checkpoint_table_name
}

output "checkpoint_table_arn" {
  value = module.processor.checkpoint_table_arn
}

output "sink_table_name" {
  value = aws_dynamodb_table.sink.name
}

output "sink_table_arn" {
  value = aws_dynamodb_table.sink.arn
}

output "poison_queue_url" {
  value = module.processor.poison_queue_url
}

output "poison_queue_arn" {
  value = module.processor.poison_queue_arn
}

output "on_failure_queue_url" {
  value = module.processor.on_failure_queue_url
}

output "on_failure_queue_arn" {
  value = module.processor.on_failure_queue_arn
}

output "on_failure_destination_arn" {
  description = "Where the mappings send exhausted batches (var.on_failure_destination)."
  value       = module.processor.on_failure_destination_arn
}

output "function_name" {
  value = module.processor.function_name
}

output "function_arn" {
  value = module.processor.function_arn
}

output "role_arn" {
  value = module.processor.role_arn
}

output "log_group_name" {
  value = module.processor.log_group_name
}

output "kinesis_mapping_uuid" {
  value = module.processor.mapping_uuids["kinesis"]
}

output "dynamodb_mapping_uuid" {
  value = module.processor.mapping_uuids["dynamodb"]
}

output "kinesis_consumer_arn" {
  description = "The enhanced fan-out consumer the Kinesis mapping reads through (null unless enhanced_fan_out)."
  value       = lookup(module.processor.consumer_arns, "kinesis", null)
}

output "alarm_names" {
  value = module.processor.alarm_names
}
