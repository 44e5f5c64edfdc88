# The bucket holds silt's segments and checkpoints under var.bucket_prefix
# and the etcd snapshots under var.etcd_snapshot_prefix.

locals {
  # Length of the shorter prefix: the two prefixes must differ within it.
  prefix_overlap = min(length(var.bucket_prefix), length(var.etcd_snapshot_prefix))
}

resource "aws_s3_bucket" "this" {
  # checkov:skip=CKV_AWS_21:No versioning: silt deletes superseded segments and old checkpoints itself (object GC); versions would keep every deleted byte and bill for it.
  # checkov:skip=CKV_AWS_18:Server access logging needs a second bucket the operator owns; silt exports its own object-store request metrics on /metrics.
  # checkov:skip=CKV_AWS_144:Cross-region replication is a disaster-recovery choice of the operator (and needs versioning); not part of the base deployment.
  # checkov:skip=CKV2_AWS_62:No event notifications: nothing consumes bucket events.
  # checkov:skip=CKV_AWS_145:SSE-S3 is the default; SSE-KMS is used when s3_kms_key_arn is set (aws_s3_bucket_server_side_encryption_configuration.this).
  bucket        = var.bucket_name
  force_destroy = var.bucket_force_destroy

  tags = merge(local.tags, { Name = var.bucket_name })

  lifecycle {
    # silt's object GC deletes unreferenced objects under bucket_prefix, and
    # the snapshot lifecycle rule expires everything under
    # etcd_snapshot_prefix: neither may reach into the other.
    precondition {
      condition     = substr(var.bucket_prefix, 0, local.prefix_overlap) != substr(var.etcd_snapshot_prefix, 0, local.prefix_overlap)
      error_message = "The bucket_prefix and etcd_snapshot_prefix must differ, and neither may be a prefix of the other."
    }
  }
}

resource "aws_s3_bucket_public_access_block" "this" {
  bucket                  = aws_s3_bucket.this.id
  block_public_acls       = true
  block_public_policy     = true
  ignore_public_acls      = true
  restrict_public_buckets = true
}

resource "aws_s3_bucket_ownership_controls" "this" {
  bucket = aws_s3_bucket.this.id

  rule {
    object_ownership = "BucketOwnerEnforced"
  }
}

resource "aws_s3_bucket_server_side_encryption_configuration" "this" {
  bucket = aws_s3_bucket.this.id

  rule {
    apply_server_side_encryption_by_default {
      sse_algorithm     = var.s3_kms_key_arn == null ? "AES256" : "aws:kms"
      kms_master_key_id = var.s3_kms_key_arn
    }
    bucket_key_enabled = var.s3_kms_key_arn != null
  }
}

# Abort incomplete multipart uploads after a day. silt's own objects never
# expire by lifecycle: silt deletes them itself (retention, compaction, GC).
# Only the etcd snapshots, under their own prefix, expire.
resource "aws_s3_bucket_lifecycle_configuration" "this" {
  bucket = aws_s3_bucket.this.id

  rule {
    id     = "abort-incomplete-multipart-uploads"
    status = "Enabled"

    filter {}

    abort_incomplete_multipart_upload {
      days_after_initiation = 1
    }
  }

  rule {
    id     = "expire-etcd-snapshots"
    status = "Enabled"

    filter {
      prefix = "${var.etcd_snapshot_prefix}/"
    }

    expiration {
      days = var.etcd_snapshot_retention_days
    }

    abort_incomplete_multipart_upload {
      days_after_initiation = 1
    }
  }
}

data "aws_iam_policy_document" "bucket" {
  statement {
    sid     = "DenyInsecureTransport"
    effect  = "Deny"
    actions = ["s3:*"]
    resources = [
      aws_s3_bucket.this.arn,
      "${aws_s3_bucket.this.arn}/*",
    ]

    principals {
      type        = "*"
      identifiers = ["*"]
    }

    condition {
      test     = "Bool"
      variable = "aws:SecureTransport"
      values   = ["false"]
    }
  }
}

resource "aws_s3_bucket_policy" "this" {
  bucket = aws_s3_bucket.this.id
  policy = data.aws_iam_policy_document.bucket.json

  depends_on = [aws_s3_bucket_public_access_block.this]
}
