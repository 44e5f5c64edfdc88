# Least privilege: the agents get exactly the S3 actions silt calls, on the
# bucket and prefix only; the etcd members may only write snapshots
# (PutObject and AbortMultipartUpload under their prefix); the
# Lambda functions get what lambda/README.md lists.

locals {
  bucket_arn           = aws_s3_bucket.this.arn
  silt_objects_arn     = "${aws_s3_bucket.this.arn}/${var.bucket_prefix}/*"
  snapshot_objects_arn = "${aws_s3_bucket.this.arn}/${var.etcd_snapshot_prefix}/*"
  kms_key_arns         = var.s3_kms_key_arn == null ? [] : [var.s3_kms_key_arn]
}

data "aws_iam_policy_document" "ec2_assume" {
  statement {
    actions = ["sts:AssumeRole"]

    principals {
      type        = "Service"
      identifiers = ["ec2.amazonaws.com"]
    }
  }
}

data "aws_iam_policy_document" "lambda_assume" {
  statement {
    actions = ["sts:AssumeRole"]

    principals {
      type        = "Service"
      identifiers = ["lambda.amazonaws.com"]
    }
  }
}

# --- Agents -------------------------------------------------------------------

data "aws_iam_policy_document" "agent" {
  statement {
    sid = "SiltObjects"
    actions = [
      "s3:GetObject",
      "s3:PutObject",
      "s3:DeleteObject",
      "s3:AbortMultipartUpload",
    ]
    resources = [local.silt_objects_arn]
  }

  statement {
    sid       = "SiltList"
    actions   = ["s3:ListBucket"]
    resources = [local.bucket_arn]

    # IfExists: S3 also consults ListBucket, without a prefix, to answer a
    # GET of a missing key with 404 (silt reads "not found" as absent)
    # instead of 403; listings of other prefixes stay denied.
    condition {
      test     = "StringLikeIfExists"
      variable = "s3:prefix"
      values   = ["${var.bucket_prefix}/*"]
    }
  }

  statement {
    sid = "AgentLogs"
    actions = [
      "logs:CreateLogStream",
      "logs:DescribeLogStreams",
      "logs:PutLogEvents",
    ]
    resources = [
      aws_cloudwatch_log_group.agent.arn,
      "${aws_cloudwatch_log_group.agent.arn}:*",
    ]
  }

  dynamic "statement" {
    for_each = length(local.kms_key_arns) > 0 ? [1] : []

    content {
      sid       = "BucketKey"
      actions   = ["kms:Decrypt", "kms:GenerateDataKey"]
      resources = local.kms_key_arns
    }
  }
}

resource "aws_iam_role" "agent" {
  name_prefix        = "${local.name}-agent-"
  assume_role_policy = data.aws_iam_policy_document.ec2_assume.json

  tags = local.tags
}

resource "aws_iam_role_policy" "agent" {
  name   = "silt-agent"
  role   = aws_iam_role.agent.id
  policy = data.aws_iam_policy_document.agent.json
}

resource "aws_iam_role_policy_attachment" "agent_ssm" {
  count      = var.enable_ssm ? 1 : 0
  role       = aws_iam_role.agent.name
  policy_arn = "arn:${data.aws_partition.current.partition}:iam::aws:policy/AmazonSSMManagedInstanceCore"
}

resource "aws_iam_instance_profile" "agent" {
  name_prefix = "${local.name}-agent-"
  role        = aws_iam_role.agent.name

  tags = local.tags
}

# --- etcd members ---------------------------------------------------------------

data "aws_iam_policy_document" "etcd" {
  statement {
    sid = "EtcdSnapshots"
    # aws s3 cp uploads a snapshot in parts; a failed upload is aborted.
    actions   = ["s3:PutObject", "s3:AbortMultipartUpload"]
    resources = [local.snapshot_objects_arn]
  }

  statement {
    sid = "EtcdLogs"
    actions = [
      "logs:CreateLogStream",
      "logs:DescribeLogStreams",
      "logs:PutLogEvents",
    ]
    resources = [
      aws_cloudwatch_log_group.etcd.arn,
      "${aws_cloudwatch_log_group.etcd.arn}:*",
    ]
  }

  dynamic "statement" {
    for_each = length(local.kms_key_arns) > 0 ? [1] : []

    content {
      sid = "BucketKey"
      # A multipart upload to an SSE-KMS bucket also needs kms:Decrypt.
      actions   = ["kms:Decrypt", "kms:GenerateDataKey"]
      resources = local.kms_key_arns
    }
  }
}

resource "aws_iam_role" "etcd" {
  name_prefix        = "${local.name}-etcd-"
  assume_role_policy = data.aws_iam_policy_document.ec2_assume.json

  tags = local.tags
}

resource "aws_iam_role_policy" "etcd" {
  name   = "silt-etcd"
  role   = aws_iam_role.etcd.id
  policy = data.aws_iam_policy_document.etcd.json
}

resource "aws_iam_role_policy_attachment" "etcd_ssm" {
  count      = var.enable_ssm ? 1 : 0
  role       = aws_iam_role.etcd.name
  policy_arn = "arn:${data.aws_partition.current.partition}:iam::aws:policy/AmazonSSMManagedInstanceCore"
}

resource "aws_iam_instance_profile" "etcd" {
  name_prefix = "${local.name}-etcd-"
  role        = aws_iam_role.etcd.name

  tags = local.tags
}

# --- Lambda functions -------------------------------------------------------------

data "aws_iam_policy_document" "silt_http" {
  statement {
    sid       = "SiltObjects"
    actions   = ["s3:GetObject", "s3:PutObject"]
    resources = [local.silt_objects_arn]
  }

  statement {
    sid       = "SiltList"
    actions   = ["s3:ListBucket"]
    resources = [local.bucket_arn]

    # IfExists: S3 also consults ListBucket, without a prefix, to answer a
    # GET of a missing key with 404 (silt reads "not found" as absent)
    # instead of 403; listings of other prefixes stay denied.
    condition {
      test     = "StringLikeIfExists"
      variable = "s3:prefix"
      values   = ["${var.bucket_prefix}/*"]
    }
  }

  statement {
    sid       = "FunctionLogs"
    actions   = ["logs:CreateLogStream", "logs:PutLogEvents"]
    resources = ["arn:${data.aws_partition.current.partition}:logs:${data.aws_region.current.name}:${data.aws_caller_identity.current.account_id}:log-group:/aws/lambda/silt-http-${var.cluster_name}:*"]
  }

  dynamic "statement" {
    for_each = length(local.kms_key_arns) > 0 ? [1] : []

    content {
      sid       = "BucketKey"
      actions   = ["kms:Decrypt", "kms:GenerateDataKey"]
      resources = local.kms_key_arns
    }
  }
}

data "aws_iam_policy_document" "silt_jobs" {
  statement {
    sid       = "SiltObjects"
    actions   = ["s3:GetObject", "s3:PutObject", "s3:DeleteObject"]
    resources = [local.silt_objects_arn]
  }

  statement {
    sid       = "SiltList"
    actions   = ["s3:ListBucket"]
    resources = [local.bucket_arn]

    # IfExists: S3 also consults ListBucket, without a prefix, to answer a
    # GET of a missing key with 404 (silt reads "not found" as absent)
    # instead of 403; listings of other prefixes stay denied.
    condition {
      test     = "StringLikeIfExists"
      variable = "s3:prefix"
      values   = ["${var.bucket_prefix}/*"]
    }
  }

  statement {
    sid       = "FunctionLogs"
    actions   = ["logs:CreateLogStream", "logs:PutLogEvents"]
    resources = ["arn:${data.aws_partition.current.partition}:logs:${data.aws_region.current.name}:${data.aws_caller_identity.current.account_id}:log-group:/aws/lambda/silt-jobs-${var.cluster_name}:*"]
  }

  dynamic "statement" {
    for_each = length(local.kms_key_arns) > 0 ? [1] : []

    content {
      sid       = "BucketKey"
      actions   = ["kms:Decrypt", "kms:GenerateDataKey"]
      resources = local.kms_key_arns
    }
  }
}

resource "aws_iam_role" "silt_http" {
  count              = var.enable_lambda ? 1 : 0
  name_prefix        = "${local.name}-http-"
  assume_role_policy = data.aws_iam_policy_document.lambda_assume.json

  tags = local.tags
}

resource "aws_iam_role_policy" "silt_http" {
  count  = var.enable_lambda ? 1 : 0
  name   = "silt-http"
  role   = aws_iam_role.silt_http[0].id
  policy = data.aws_iam_policy_document.silt_http.json
}

resource "aws_iam_role_policy_attachment" "silt_http_vpc" {
  count      = var.enable_lambda ? 1 : 0
  role       = aws_iam_role.silt_http[0].name
  policy_arn = "arn:${data.aws_partition.current.partition}:iam::aws:policy/service-role/AWSLambdaVPCAccessExecutionRole"
}

resource "aws_iam_role" "silt_jobs" {
  count              = var.enable_lambda ? 1 : 0
  name_prefix        = "${local.name}-jobs-"
  assume_role_policy = data.aws_iam_policy_document.lambda_assume.json

  tags = local.tags
}

resource "aws_iam_role_policy" "silt_jobs" {
  count  = var.enable_lambda ? 1 : 0
  name   = "silt-jobs"
  role   = aws_iam_role.silt_jobs[0].id
  policy = data.aws_iam_policy_document.silt_jobs.json
}

resource "aws_iam_role_policy_attachment" "silt_jobs_vpc" {
  count      = var.enable_lambda ? 1 : 0
  role       = aws_iam_role.silt_jobs[0].name
  policy_arn = "arn:${data.aws_partition.current.partition}:iam::aws:policy/service-role/AWSLambdaVPCAccessExecutionRole"
}
