# Worker AMI: Amazon Linux 2023 with ews-worker, its systemd unit, the boot-time configuration and
# lifecycle-drain scripts, raised nofile limits and kernel tuning for many WebSockets.
source "amazon-ebs" "worker" {
  region        = var.region
  instance_type = var.instance_type
  subnet_id     = var.subnet_id
  ssh_username  = "ec2-user"
  # SSH from the builder's address only (variables.pkr.hcl).
  temporary_security_group_source_cidrs = [var.ssh_source_cidr]
  ami_name                              = "ews-worker-${var.version}-${formatdate("YYYYMMDDhhmmss", timestamp())}"
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
    Name        = "ews-worker"
    Role        = "worker"
    Version     = var.version
    Application = "elastic-ws"
    # What the image was built from (packer/scripts/amis.sh build-hash): an unchanged build is reused.
    BuildHash = var.build_hash
  }
}

build {
  sources = ["source.amazon-ebs.worker"]

  # Directory uploads need an existing destination.
  provisioner "shell" {
    inline = ["mkdir -p /tmp/ews-files"]
  }

  provisioner "file" {
    source      = "${path.root}/files/"
    destination = "/tmp/ews-files"
  }

  provisioner "file" {
    source      = "${local.bin_dir}/ews-worker"
    destination = "/tmp/ews-files/ews-worker"
  }

  provisioner "shell" {
    script          = "${path.root}/scripts/provision.sh"
    execute_command = "chmod +x {{ .Path }}; sudo env EWS_FILES=/tmp/ews-files {{ .Path }} worker"
  }
}
