# One mapping per source, with the same settings: partial batch responses (the processor
# reports the lowest failed sequence number), bisect on function error, bounded retries and
# record age, and the on-failure destination once those run out. Optional: event filters,
# tumbling windows and event-count metrics.

# With enhanced_fan_out a Kinesis stream is read through a consumer of its own, registered
# here; the mapping's source is then the consumer's ARN, as Lambda takes it.
# https://docs.aws.amazon.com/lambda/latest/dg/with-kinesis-configure.html#services-kinesis-configure-efo
resource "aws_kinesis_stream_consumer" "source" {
  for_each = var.enhanced_fan_out ? var.kinesis_stream_arns : {}

  name       = "${var.name}-${each.key}"
  stream_arn = each.value
}

locals {
  event_sources = merge(
    {
      for name, arn in var.kinesis_stream_arns :
      name => var.enhanced_fan_out ? aws_kinesis_stream_consumer.source[name].arn : arn
    },
    var.dynamodb_stream_arns,
  )

  # FilterCriteria and MetricsConfig as the Lambda API takes them; the blocks below are built
  # from these (and the offline adapter sets these after apply). A pattern given as an object
  # is encoded; one given as a string is re-encoded, so equal patterns plan equal.
  # https://docs.aws.amazon.com/lambda/latest/dg/invocation-eventfiltering.html
  filter_criteria = {
    Filters = [
      for pattern in var.filter_criteria : { Pattern = try(jsonencode(jsondecode(pattern)), jsonencode(pattern)) }
    ]
  }
  metrics_config = {
    Metrics = var.metrics_config ? ["EventCount"] : []
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
  tumbling_window_in_seconds         = var.tumbling_window_in_seconds

  destination_config {
    on_failure {
      destination_arn = local.on_failure_destination_arn
    }
  }

  dynamic "filter_criteria" {
    for_each = length(local.filter_criteria.Filters) > 0 ? [local.filter_criteria] : []
    content {
      dynamic "filter" {
        for_each = filter_criteria.value.Filters
        content {
          pattern = filter.value.Pattern
        }
      }
    }
  }

  dynamic "metrics_config" {
    for_each = length(local.metrics_config.Metrics) > 0 ? [local.metrics_config] : []
    content {
      metrics = metrics_config.value.Metrics
    }
  }

  # Lambda checks the role's permissions on the source when the mapping is created.
  depends_on = [aws_iam_role_policy.processor]
}
