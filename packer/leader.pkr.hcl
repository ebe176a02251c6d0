# Leader AMI: Amazon Linux 2023 with ews-leader, its systemd unit, the boot-time configuration,
# raised nofile limits and the same kernel tuning (leaders hold a link to every worker).
source "amazon-ebs" "leader" {
  region        = var.region
  instance_type = var.instance_type
  subnet_id     = var.subnet_id
  ssh_username  = "ec2-user"
  # SSH from the builder's address only (variables.pkr.hcl).
  temporary_security_group_source_cidrs = [var.ssh_source_cidr]
  ami_name                              = "ews-leader-${var.version}-${formatdate("YYYYMMDDhhmmss", timestamp())}"
  source_ami_filter {
    filters = {
      name                = "al2023-ami-2023.*-kernel-6.1-x86_64"
      virtualization-type = "hvm"
      root-device-type    = "ebs"
    }
    owners      = ["amazon"]
    most_recent = true
  }
  # Only meaningful with a subnet of our choosing; the default VPC maps public IPs itself.
  associate_public_ip_address = var.subnet_id != "" ? var.associate_public_ip_address : null
  tags = {
    Name        = "ews-leader"
    Role        = "leader"
    Version     = var.version
    Application = "elastic-ws"
    # What the image was built from (packer/scripts/amis.sh build-hash): an unchanged build is reused.
    BuildHash = var.build_hash
  }
}

build {
  sources = ["source.amazon-ebs.leader"]

  # Directory uploads need an existing destination.
  provisioner "shell" {
    inline = ["mkdir -p /tmp/ews-files"]
  }

  provisioner "file" {
    source      = "${path.root}/files/"
    destination = "/tmp/ews-files"
  }

  provisioner "file" {
    source      = "${local.bin_dir}/ews-leader"
    destination = "/tmp/ews-files/ews-leader"
  }

  provisioner "shell" {
    script          = "${path.root}/scripts/provision.sh"
    execute_command = "chmod +x {{ .Path }}; sudo env EWS_FILES=/tmp/ews-files {{ .Path }} leader"
  }
}
