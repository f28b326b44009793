# The function's execution role: exactly the actions the processor and its two mappings use,
# each on the ARN of this stack's resource. Lambda polls the sources and writes on-failure
# records with this role (sqs:SendMessage, sns:Publish or s3:PutObject, for the chosen
# destination only); the handler reads and writes checkpoints, writes the sink and parks
# poison records.
# https://docs.aws.amazon.com/lambda/latest/dg/with-kinesis.html#events-kinesis-permissions
# https://docs.aws.amazon.com/lambda/latest/dg/with-ddb.html#events-dynamodb-permissions

resource "aws_iam_role" "processor" {
  name = "${var.name}-processor"

  assume_role_policy = jsonencode({
    Version = "2012-10-17"
    Statement = [{
      Effect    = "Allow"
      Principal = { Service = "lambda.amazonaws.com" }
      Action    = "sts:AssumeRole"
    }]
  })
}

resource "aws_iam_role_policy" "processor" {
  name = "${var.name}-processor"
  role = aws_iam_role.processor.id

  policy = jsonencode({
    Version = "2012-10-17"
    Statement = concat([
      {
        Sid    = "ReadKinesisStream"
        Effect = "Allow"
        Action = [
          "kinesis:DescribeStream",
          "kinesis:DescribeStreamSummary",
          "kinesis:GetRecords",
          "kinesis:GetShardIterator",
          "kinesis:ListShards",
        ]
        Resource = [aws_kinesis_stream.events.arn]
      },
      {
        Sid    = "ReadDynamoDBStream"
        Effect = "Allow"
        Action = [
          "dynamodb:DescribeStream",
          "dynamodb:GetRecords",
          "dynamodb:GetShardIterator",
          "dynamodb:ListStreams",
        ]
        Resource = [aws_dynamodb_table.source.stream_arn]
      },
      {
        # processor/checkpoint.py: BatchGetItem to load a batch's positions, UpdateItem for
        # the conditional forward-only write, alone or as one item of TransactWriteItems
        # (authorised per item action).
        Sid      = "ReadWriteCheckpoints"
        Effect   = "Allow"
        Action   = ["dynamodb:BatchGetItem", "dynamodb:UpdateItem"]
        Resource = [aws_dynamodb_table.checkpoints.arn]
      },
      {
        # processor/handler.py (the demo app): reads a key's row, updates it in the
        # checkpoint's transaction.
        Sid      = "ReadWriteSink"
        Effect   = "Allow"
        Action   = ["dynamodb:GetItem", "dynamodb:UpdateItem"]
        Resource = [aws_dynamodb_table.sink.arn]
      },
      {
        # The handler parks poison records; Lambda itself sends on-failure records when the
        # on-failure destination is the queue.
        Sid    = "SendToQueues"
        Effect = "Allow"
        Action = ["sqs:SendMessage"]
        Resource = concat(
          [aws_sqs_queue.poison.arn],
          var.on_failure_destination == "sqs" ? [aws_sqs_queue.on_failure.arn] : [],
        )
      },
      {
        Sid      = "WriteOwnLogs"
        Effect   = "Allow"
        Action   = ["logs:CreateLogStream", "logs:PutLogEvents"]
        Resource = ["${aws_cloudwatch_log_group.processor.arn}:*"]
      },
      ], [
      # The on-failure topic or bucket, when chosen (destinations.tf): what Lambda needs to
      # write the on-failure record there, on that resource only.
      # https://docs.aws.amazon.com/lambda/latest/dg/kinesis-on-failure-destination.html
      for statement in [
        {
          Sid      = "PublishOnFailure"
          Effect   = "Allow"
          Action   = ["sns:Publish"]
          Resource = aws_sns_topic.on_failure[*].arn
        },
        {
          Sid      = "ListOnFailureBucket"
          Effect   = "Allow"
          Action   = ["s3:ListBucket"]
          Resource = aws_s3_bucket.on_failure[*].arn
        },
        {
          Sid      = "PutOnFailureObjects"
          Effect   = "Allow"
          Action   = ["s3:PutObject"]
          Resource = [for arn in aws_s3_bucket.on_failure[*].arn : "${arn}/*"]
        },
      ] : statement if length(statement.Resource) > 0
    ])
  })
}
