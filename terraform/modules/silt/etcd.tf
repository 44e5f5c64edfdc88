# Three etcd members, one per availability zone, each with a stable name,
# a fixed network interface (stable private IP), a Route 53 private record
# and a persistent encrypted EBS data volume. Replacing a member's instance
# keeps all three: the new instance boots into the same identity and data.
# The volumes and interfaces carry prevent_destroy, and the instances ignore
# every change that would stop or replace the three members at once: members
# are replaced one at a time with -replace (README, "Upgrade").

locals {
  etcd_zone_name = var.etcd_dns_zone != "" ? var.etcd_dns_zone : "${var.cluster_name}.silt.internal"
  etcd_members   = ["etcd-1", "etcd-2", "etcd-3"]
  etcd_fqdns     = [for m in local.etcd_members : "${m}.${local.etcd_zone_name}"]

  etcd_client_scheme = var.etcd_client_tls ? "https" : "http"
  etcd_endpoints     = join(",", [for f in local.etcd_fqdns : "${local.etcd_client_scheme}://${f}:2379"])
  etcd_initial_cluster = join(",", [
    for i, m in local.etcd_members : "${m}=https://${local.etcd_fqdns[i]}:2380"
  ])

  etcd_pki_dir = "/etc/etcd/pki"
  etcd_client_tls_flags = var.etcd_client_tls ? join(" ", [
    "--cert-file=${local.etcd_pki_dir}/member.crt",
    "--key-file=${local.etcd_pki_dir}/member.key",
    "--trusted-ca-file=${local.etcd_pki_dir}/ca.crt",
    "--client-cert-auth",
  ]) : ""
  etcdctl_tls_flags = var.etcd_client_tls ? join(" ", [
    "--cacert=${local.etcd_pki_dir}/ca.crt",
    "--cert=${local.etcd_pki_dir}/member.crt",
    "--key=${local.etcd_pki_dir}/member.key",
  ]) : ""

  etcd_arch        = var.architecture == "arm64" ? "arm64" : "amd64"
  etcd_release_url = var.etcd_release_url != "" ? var.etcd_release_url : "https://github.com/etcd-io/etcd/releases/download/v${var.etcd_version}/etcd-v${var.etcd_version}-linux-${local.etcd_arch}.tar.gz"

  ami_parameter = "/aws/service/ami-amazon-linux-latest/al2023-ami-kernel-default-${var.architecture}"
}

data "aws_ssm_parameter" "al2023_ami" {
  name = local.ami_parameter
}

data "aws_subnet" "etcd" {
  count = 3
  id    = local.etcd_subnet_ids[count.index]

  lifecycle {
    precondition {
      condition     = length(local.private_subnet_ids) >= 3
      error_message = "With an existing VPC (vpc_id), subnet_ids must list at least three private subnets in three availability zones; the first three carry the etcd members."
    }
  }
}

# --- TLS: a CA (generated, or supplied) and one certificate per member -------

resource "tls_private_key" "etcd_ca" {
  count       = var.etcd_ca_cert_pem == null ? 1 : 0
  algorithm   = "ECDSA"
  ecdsa_curve = "P256"
}

resource "tls_self_signed_cert" "etcd_ca" {
  count                 = var.etcd_ca_cert_pem == null ? 1 : 0
  private_key_pem       = tls_private_key.etcd_ca[0].private_key_pem
  is_ca_certificate     = true
  validity_period_hours = 87600

  subject {
    common_name  = "${local.name} etcd CA"
    organization = "silt"
  }

  allowed_uses = [
    "cert_signing",
    "crl_signing",
    "digital_signature",
  ]
}

locals {
  etcd_ca_cert_pem = var.etcd_ca_cert_pem != null ? var.etcd_ca_cert_pem : tls_self_signed_cert.etcd_ca[0].cert_pem
  etcd_ca_key_pem  = var.etcd_ca_cert_pem != null ? var.etcd_ca_private_key_pem : tls_private_key.etcd_ca[0].private_key_pem
}

resource "tls_private_key" "etcd_member" {
  count       = 3
  algorithm   = "ECDSA"
  ecdsa_curve = "P256"
}

resource "tls_cert_request" "etcd_member" {
  count           = 3
  private_key_pem = tls_private_key.etcd_member[count.index].private_key_pem
  dns_names       = [local.etcd_fqdns[count.index], "localhost"]
  ip_addresses    = [aws_network_interface.etcd[count.index].private_ip, "127.0.0.1"]

  subject {
    common_name  = local.etcd_fqdns[count.index]
    organization = "silt"
  }
}

resource "tls_locally_signed_cert" "etcd_member" {
  count                 = 3
  cert_request_pem      = tls_cert_request.etcd_member[count.index].cert_request_pem
  ca_private_key_pem    = local.etcd_ca_key_pem
  ca_cert_pem           = local.etcd_ca_cert_pem
  validity_period_hours = 43800
  early_renewal_hours   = 720

  # Server on 2379/2380, client towards the other members (and etcdctl).
  allowed_uses = [
    "digital_signature",
    "key_encipherment",
    "server_auth",
    "client_auth",
  ]

  lifecycle {
    precondition {
      condition     = (var.etcd_ca_cert_pem == null) == (var.etcd_ca_private_key_pem == null)
      error_message = "Give etcd_ca_cert_pem and etcd_ca_private_key_pem together, or neither (the module then generates a CA)."
    }
  }
}

# One client certificate for silt (agents and functions) when etcd requires
# client certificates on 2379 (etcd_client_tls).
resource "tls_private_key" "etcd_client" {
  count       = var.etcd_client_tls ? 1 : 0
  algorithm   = "ECDSA"
  ecdsa_curve = "P256"
}

resource "tls_cert_request" "etcd_client" {
  count           = var.etcd_client_tls ? 1 : 0
  private_key_pem = tls_private_key.etcd_client[0].private_key_pem

  subject {
    common_name  = "silt"
    organization = "silt"
  }
}

resource "tls_locally_signed_cert" "etcd_client" {
  count                 = var.etcd_client_tls ? 1 : 0
  cert_request_pem      = tls_cert_request.etcd_client[0].cert_request_pem
  ca_private_key_pem    = local.etcd_ca_key_pem
  ca_cert_pem           = local.etcd_ca_cert_pem
  validity_period_hours = 43800
  early_renewal_hours   = 720

  allowed_uses = [
    "digital_signature",
    "key_encipherment",
    "client_auth",
  ]
}

locals {
  etcd_client_cert_pem = var.etcd_client_tls ? tls_locally_signed_cert.etcd_client[0].cert_pem : ""
  etcd_client_key_pem  = var.etcd_client_tls ? tls_private_key.etcd_client[0].private_key_pem : ""
  # The agent's etcd settings (an EnvironmentFile of its unit): the files its
  # user data writes under /etc/silt/pki.
  agent_etcd_env = var.etcd_client_tls ? join("\n", [
    "SILT_ETCD_CA_FILE=/etc/silt/pki/etcd-ca.pem",
    "SILT_ETCD_CERT_FILE=/etc/silt/pki/etcd-client.pem",
    "SILT_ETCD_KEY_FILE=/etc/silt/pki/etcd-client-key.pem",
  ]) : ""
  # The functions get the PEM text itself (lambda/README.md).
  lambda_etcd_env = var.etcd_client_tls ? {
    SILT_ETCD_CA_PEM   = local.etcd_ca_cert_pem
    SILT_ETCD_CERT_PEM = local.etcd_client_cert_pem
    SILT_ETCD_KEY_PEM  = local.etcd_client_key_pem
  } : {}
}

# --- Stable identity: network interface, DNS record, data volume -----------

resource "aws_network_interface" "etcd" {
  count           = 3
  subnet_id       = local.etcd_subnet_ids[count.index]
  security_groups = [aws_security_group.etcd.id]
  description     = "${local.name} ${local.etcd_members[count.index]}"

  tags = merge(local.tags, { Name = "${local.name}-${local.etcd_members[count.index]}" })

  lifecycle {
    # The member's private IP is in its certificate and DNS record: losing
    # it needs the membership procedure of README "Upgrade". A full destroy
    # must lift this first (README, "Destroy").
    prevent_destroy = true
  }
}

resource "aws_route53_zone" "etcd" {
  # checkov:skip=CKV2_AWS_38:DNSSEC signing applies to public zones; this zone is private to the VPC.
  # checkov:skip=CKV2_AWS_39:Query logging of a private zone needs Resolver query logging, an operator-wide choice.
  name    = local.etcd_zone_name
  comment = "etcd members of silt cluster ${var.cluster_name}"

  vpc {
    vpc_id = local.vpc_id
  }

  tags = local.tags
}

resource "aws_route53_record" "etcd" {
  # checkov:skip=CKV2_AWS_23:Each record points at the private IP of an etcd member's network interface (aws_network_interface.etcd), which outlives the instance.
  count   = 3
  zone_id = aws_route53_zone.etcd.zone_id
  name    = local.etcd_fqdns[count.index]
  type    = "A"
  ttl     = 60
  records = [aws_network_interface.etcd[count.index].private_ip]
}

resource "aws_ebs_volume" "etcd" {
  # checkov:skip=CKV_AWS_189:Always encrypted; with the account's default EBS key unless ebs_kms_key_arn names a customer key.
  count             = 3
  availability_zone = data.aws_subnet.etcd[count.index].availability_zone
  size              = var.etcd_volume_size
  type              = "gp3"
  encrypted         = true
  kms_key_id        = var.ebs_kms_key_arn

  tags = merge(local.tags, { Name = "${local.name}-${local.etcd_members[count.index]}-data" })

  lifecycle {
    # etcd's data. Changing ebs_kms_key_arn, the zones or the order of the
    # etcd subnets would replace all three volumes at once, so such a plan
    # fails here instead (README, "Upgrade"). A full destroy must lift this
    # first (README, "Destroy").
    prevent_destroy = true

    precondition {
      condition     = length(distinct(data.aws_subnet.etcd[*].availability_zone)) == 3
      error_message = "The first three private subnets carry the etcd members and must be in three different availability zones."
    }
  }
}

resource "aws_cloudwatch_log_group" "etcd" {
  # checkov:skip=CKV_AWS_338:Retention is a variable (30 days by default); etcd's durable history is in the snapshots, not the logs.
  # checkov:skip=CKV_AWS_158:Encrypted by CloudWatch Logs by default; with KMS when logs_kms_key_arn is set.
  name              = "/silt/${var.cluster_name}/etcd"
  retention_in_days = var.log_retention_days
  kms_key_id        = var.logs_kms_key_arn

  tags = local.tags
}

resource "aws_instance" "etcd" {
  count                = 3
  ami                  = data.aws_ssm_parameter.al2023_ami.value
  instance_type        = var.etcd_instance_type
  iam_instance_profile = aws_iam_instance_profile.etcd.name
  ebs_optimized        = true
  monitoring           = true

  network_interface {
    network_interface_id = aws_network_interface.etcd[count.index].id
    device_index         = 0
  }

  metadata_options {
    http_endpoint               = "enabled"
    http_tokens                 = "required"
    http_put_response_hop_limit = 1
  }

  root_block_device {
    volume_type = "gp3"
    volume_size = 16
    encrypted   = true
    kms_key_id  = var.ebs_kms_key_arn
    tags        = merge(local.tags, { Name = "${local.name}-${local.etcd_members[count.index]}-root" })
  }

  user_data = templatefile("${path.module}/templates/etcd.sh.tftpl", {
    member_name           = local.etcd_members[count.index]
    member_fqdn           = local.etcd_fqdns[count.index]
    initial_cluster       = local.etcd_initial_cluster
    initial_cluster_state = var.etcd_initial_cluster_state
    cluster_token         = "${local.name}-etcd"
    client_scheme         = local.etcd_client_scheme
    client_tls_flags      = local.etcd_client_tls_flags
    etcdctl_tls_flags     = local.etcdctl_tls_flags
    quota_backend_bytes   = var.etcd_quota_backend_bytes
    compaction_retention  = var.etcd_auto_compaction_retention
    data_volume_id        = aws_ebs_volume.etcd[count.index].id
    etcd_release_url      = local.etcd_release_url
    etcd_release_sha256   = var.etcd_release_sha256
    ca_cert_pem           = local.etcd_ca_cert_pem
    cert_pem              = tls_locally_signed_cert.etcd_member[count.index].cert_pem
    key_pem               = tls_private_key.etcd_member[count.index].private_key_pem
    bucket                = aws_s3_bucket.this.id
    snapshot_prefix       = "${var.etcd_snapshot_prefix}/"
    snapshot_schedule     = var.etcd_snapshot_schedule
    region                = data.aws_region.current.name
    log_group             = aws_cloudwatch_log_group.etcd.name
  })

  tags = merge(local.tags, { Name = "${local.name}-${local.etcd_members[count.index]}", "silt:etcd-member" = local.etcd_members[count.index] })

  lifecycle {
    # Nothing an ordinary apply changes may stop or replace the three members
    # at once: a new AMI or rendered user data (replacement), a new instance
    # type or EBS optimisation (stop and start), a root volume change
    # (replacement). Such changes reach a member when it is replaced on its
    # own with -replace, one at a time (README, "Upgrade").
    ignore_changes = [ami, user_data, user_data_base64, instance_type, ebs_optimized, root_block_device]
  }

  # The members need their DNS names, a route out (NAT, when the module
  # creates one) for the release download, the S3 endpoint for snapshots and
  # their role's policies from their first boot.
  depends_on = [
    aws_route53_record.etcd,
    aws_route_table_association.private,
    aws_route.private_nat,
    aws_vpc_endpoint.s3,
    aws_iam_role_policy.etcd,
    aws_iam_role_policy_attachment.etcd_ssm,
  ]
}

resource "aws_volume_attachment" "etcd" {
  count                          = 3
  device_name                    = "/dev/sdf"
  volume_id                      = aws_ebs_volume.etcd[count.index].id
  instance_id                    = aws_instance.etcd[count.index].id
  stop_instance_before_detaching = true
}
